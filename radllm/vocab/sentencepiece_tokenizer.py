"""A SentencePiece tokenizer trained on the manifest's reports, for language models trained from scratch.

The model is SentencePiece BPE with byte fallback, so any character (accents, "×", "µ") still
round-trips through its UTF-8 bytes, and with identity normalisation and no whitespace cleanup,
so the decoded text is byte-for-byte the report (double spaces and newlines included). Digits are
split one by one, which keeps measurements ("2.5 cm", "12 mm") compositional.

It is wrapped as a Hugging Face `LlamaTokenizer` (SentencePiece BPE is exactly Llama's tokenizer
type: Metaspace pre-tokenization, byte fallback), so plain `AutoTokenizer.from_pretrained` loads it
without sentencepiece or remote code. Unlike Llama it adds no dummy prefix space: reports then
decode with their leading whitespace intact. The visual vocabulary is added afterwards by the same
code path as for a pretrained base (`radllm.vocab.extend.build_tokenizer`).
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import sentencepiece as spm
from tqdm import tqdm
from transformers import LlamaTokenizer
from transformers.convert_slow_tokenizer import SentencePieceExtractor

from radllm.errors import RadllmError
from radllm.manifest import iter_manifest
from radllm.vocab.extend import DEFAULT_PAD_MULTIPLE, build_tokenizer, check_output_dir
from radllm.vocab_spec import VisualVocabSpec
from radllm.vq.checkpoint import tokenizer_geometry

log = logging.getLogger(__name__)

UNK, BOS, EOS, PAD = "<unk>", "<s>", "</s>", "<pad>"  # ids 0..3 of the SentencePiece model


def report_texts(manifest: str | os.PathLike, splits: Sequence[str] = ("train",)) -> list[str]:
    """Non-empty `report.text` of every study in `splits` (train only by default: no test leakage)."""
    texts = [
        study.report.text
        for study in tqdm(iter_manifest(manifest), desc="reading reports", unit=" studies")
        if study.split in splits and study.report.text.strip()
    ]
    if not texts:
        raise RadllmError(f"{manifest}: no non-empty report text in split(s) {list(splits)}")
    return texts


def train_sentencepiece(texts: Sequence[str], vocab_size: int, num_threads: int = 1) -> bytes:
    """Train a SentencePiece BPE model on `texts`; returns the serialized model proto.

    `vocab_size` counts the 4 special pieces and the 256 byte-fallback pieces, so it must exceed
    260 plus the number of distinct characters. It is a soft limit: a corpus too small to fill it
    gives a smaller vocabulary instead of failing.
    """
    buffer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_writer=buffer,
            vocab_size=vocab_size,
            hard_vocab_limit=False,
            model_type="bpe",
            byte_fallback=True,
            character_coverage=1.0,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            add_dummy_prefix=False,
            split_digits=True,
            max_sentence_length=1 << 16,
            unk_id=0, bos_id=1, eos_id=2, pad_id=3,
            unk_piece=UNK, bos_piece=BOS, eos_piece=EOS, pad_piece=PAD,
            num_threads=num_threads,
            minloglevel=1 if log.getEffectiveLevel() > logging.DEBUG else 0,
        )
    except RuntimeError as err:
        raise RadllmError(f"SentencePiece training with vocab size {vocab_size} failed: {err}") from err
    return buffer.getvalue()


def sentencepiece_to_hf(model_proto: bytes) -> LlamaTokenizer:
    """Wrap a SentencePiece BPE model as an HF `LlamaTokenizer` with <s>/</s>/<unk>/<pad> (adds <s>)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "sentencepiece.model")
        path.write_bytes(model_proto)
        # transformers' own extractor: vocab in id order and merges ranked by piece score.
        pieces = SentencePieceExtractor(str(path)).extract(LlamaTokenizer.model)
    return LlamaTokenizer(
        vocab=pieces["vocab"],
        merges=pieces["merges"],
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        add_bos_token=True,
        add_eos_token=False,
        add_prefix_space=False,
    )


def build_sentencepiece_tokenizer(
    manifest: str | os.PathLike,
    vq_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    vocab_size: int,
    splits: Sequence[str] = ("train",),
    pad_multiple: int = DEFAULT_PAD_MULTIPLE,
    overwrite: bool = False,
    num_threads: int = 1,
) -> VisualVocabSpec:
    """Train a SentencePiece tokenizer on the manifest's reports and extend it with the visual vocab.

    The wrapped text tokenizer is saved to a staging directory first so it goes through exactly
    the same load → extend → save path (and provenance hash) as a pretrained base tokenizer.
    """
    check_output_dir(out_dir, overwrite)
    tokenizer_geometry(vq_dir)  # fail on a bad VQ directory before minutes of training
    texts = report_texts(manifest, splits)
    log.info("training SentencePiece BPE (vocab %d) on %d reports", vocab_size, len(texts))
    base = sentencepiece_to_hf(train_sentencepiece(texts, vocab_size, num_threads))
    log.info("SentencePiece vocabulary: %d pieces", len(base))
    Path(out_dir).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{Path(out_dir).name}.base.", dir=Path(out_dir).parent) as staging:
        base.save_pretrained(staging)
        return build_tokenizer(staging, vq_dir, out_dir, pad_multiple=pad_multiple, overwrite=overwrite)
