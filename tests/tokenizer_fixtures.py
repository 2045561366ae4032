"""Tiny local base tokenizers of the supported LLM families, and tiny VQ directories, for tests.

Nothing is downloaded: each family's tokenizer is trained in milliseconds with the `tokenizers`
library on a few report-like sentences, then handed to the family's own transformers class and
saved with `save_pretrained`, so `AutoTokenizer.from_pretrained` reloads it with the right class and
the same pre-tokenizer/decoder pipeline as the real checkpoints of that family:

    llama     LlamaTokenizer: Metaspace BPE with byte fallback, <unk>/<s>/</s>, adds <s>, no pad
    mistral   LlamaTokenizer class with Mistral's control tokens [INST]/[/INST]/[TOOL_CALLS]
              placed between </s> and the byte tokens, no pad
    qwen2     Qwen2Tokenizer: byte-level BPE, <|endoftext|> as eos and pad, <|im_start|>/<|im_end|>
    gpt_neox  GPTNeoXTokenizer: byte-level BPE, <|endoftext|> as bos/eos/unk, <|padding|> in the
              vocab but no pad token set (as in the EleutherAI checkpoints)

Other tests reuse it:

    from tokenizer_fixtures import make_base_tokenizer, make_vq_dir, make_visual_tokenizer
    tok_dir, vq_dir = make_visual_tokenizer(tmp_path, family="llama", codebook_size=16)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
from transformers import GPTNeoXTokenizer, LlamaTokenizer, Qwen2Tokenizer

from radllm.vocab.extend import build_tokenizer
from radllm.vq.checkpoint import save_vq
from radllm.vq.config import VQConfig
from radllm.vq.model import VQModel

# Report-like sentences: section headers, measurements, laterality, newlines and punctuation.
CORPUS = [
    "FINDINGS: The heart is normal in size. The mediastinum is unremarkable.",
    "The lungs are clear without focal consolidation. No pleural effusion or pneumothorax.",
    "IMPRESSION: No acute cardiopulmonary process.",
    "FINDINGS: Moderate cardiomegaly. Small left pleural effusion measuring 2.5 cm.",
    "Right lower lobe opacity, likely atelectasis; pneumonia is not excluded.",
    "A 12 mm nodule projects over the left upper lobe.\nIMPRESSION: Pulmonary nodule.",
    "Endotracheal tube terminates 4 cm above the carina. Nasogastric tube in the stomach.",
    "Healed fracture of the right 6th rib. Osseous structures otherwise intact.",
    "Large right pneumothorax with mild leftward mediastinal shift.",
    "Compared with the prior study, the effusion has decreased.",
]

# The Qwen2 pre-tokenization regex (splits letters, single digits, punctuation runs, newlines).
QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def _train_bpe(pre_tokenizer, vocab_size: int, initial_alphabet: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train a BPE model on `CORPUS`; returns its (vocab, merges)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=initial_alphabet, show_progress=False)
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return model["vocab"], merges


def _llama_vocab(leading: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """SentencePiece-BPE layout: `leading` specials, the 256 byte-fallback tokens, then pieces."""
    # Train with per-word splitting so no merge spans a word boundary, as SentencePiece does.
    learned, merges = _train_bpe(pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True), 260, [])
    vocab = {tok: i for i, tok in enumerate(leading)}
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    for piece, _ in sorted(learned.items(), key=lambda kv: kv[1]):
        vocab.setdefault(piece, len(vocab))
    return vocab, merges


def _byte_level_bpe(pre_tokenizer) -> tuple[dict[str, int], list[tuple[str, str]]]:
    return _train_bpe(pre_tokenizer, 420, pre_tokenizers.ByteLevel.alphabet())


def llama_base(directory: Path) -> Path:
    vocab, merges = _llama_vocab(["<unk>", "<s>", "</s>"])
    tokenizer = LlamaTokenizer(vocab=vocab, merges=merges, add_bos_token=True, add_eos_token=False)
    tokenizer.save_pretrained(directory)
    return directory


def mistral_base(directory: Path) -> Path:
    controls = ["[INST]", "[/INST]", "[TOOL_CALLS]"]
    vocab, merges = _llama_vocab(["<unk>", "<s>", "</s>", *controls])
    tokenizer = LlamaTokenizer(vocab=vocab, merges=merges, add_bos_token=True, extra_special_tokens=controls)
    tokenizer.save_pretrained(directory)
    return directory


def qwen2_base(directory: Path) -> Path:
    pre = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    vocab, merges = _byte_level_bpe(pre)
    # Qwen2Tokenizer appends <|endoftext|> after the BPE vocab, like the real checkpoints.
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, extra_special_tokens=["<|im_start|>", "<|im_end|>"])
    tokenizer.save_pretrained(directory)
    return directory


def gpt_neox_base(directory: Path) -> Path:
    learned, merges = _byte_level_bpe(pre_tokenizers.ByteLevel(add_prefix_space=False))
    vocab = {"<|endoftext|>": 0, "<|padding|>": 1}
    for piece, _ in sorted(learned.items(), key=lambda kv: kv[1]):
        vocab.setdefault(piece, len(vocab))
    tokenizer = GPTNeoXTokenizer(vocab=vocab, merges=merges, pad_token=None)
    tokenizer.save_pretrained(directory)
    return directory


FAMILIES: dict[str, Callable[[Path], Path]] = {
    "llama": llama_base,
    "mistral": mistral_base,
    "qwen2": qwen2_base,
    "gpt_neox": gpt_neox_base,
}

# The transformers class `AutoTokenizer` must reload each family as.
FAMILY_CLASSES = {"llama": LlamaTokenizer, "mistral": LlamaTokenizer, "qwen2": Qwen2Tokenizer, "gpt_neox": GPTNeoXTokenizer}


def make_base_tokenizer(directory: str | Path, family: str = "llama") -> Path:
    """Write a tiny base tokenizer of `family` (one of `FAMILIES`) into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return FAMILIES[family](directory)


def make_vq_dir(directory: str | Path, codebook_size: int = 16, image_size: int = 32, seed: int = 0, **config) -> Path:
    """Save a tiny untrained VQ-GAN (a real `VQModel` through `save_vq`) into `directory`.

    Defaults give a 32-px model with a 4x downsampling, so images become 8x8 code grids. The
    weights depend only on `seed` (same seed, same `vq_hash`); `config` overrides `VQConfig` fields.
    """
    fields = {"base_channels": 8, "channel_mult": [1, 2, 2], "num_res_blocks": 0, "z_channels": 8, "codebook_dim": 4}
    fields.update(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VQModel(VQConfig(image_size=image_size, codebook_size=codebook_size, **fields))
    save_vq(model, directory)
    return Path(directory)


def make_visual_tokenizer(
    directory: str | Path, family: str = "llama", codebook_size: int = 16, image_size: int = 32
) -> tuple[Path, Path]:
    """Build base tokenizer + VQ dir + extended tokenizer under `directory`; returns (tok_dir, vq_dir)."""
    directory = Path(directory)
    base = make_base_tokenizer(directory / f"base-{family}", family)
    vq_dir = make_vq_dir(directory / f"vq-{codebook_size}", codebook_size=codebook_size, image_size=image_size)
    tok_dir = directory / f"tokenizer-{family}-{codebook_size}"
    build_tokenizer(base, vq_dir, tok_dir)
    return tok_dir, vq_dir
