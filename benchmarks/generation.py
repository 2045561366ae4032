"""Report-generation throughput: our batched KV-cache loop at batch 32 vs batch 1 vs `transformers` generate().

    .venv/bin/python benchmarks/generation.py [--model runs/demo/model] [--batch 32] [--new-tokens 128] [--max-views 1] [--threads 2]

Times `radllm.generation.decode.decode_text`, the loop `radllm generate reports` runs, with the
report vocabulary mask applied, on the same prompts: bos, `--max-views` blocks of 16x16 image
codes (the demo VQ-GAN's grid; with 2 views every other prompt has one, so left padding is
exercised) and an instruction of 6-10 tokens. Every run emits exactly `--new-tokens`
tokens per prompt (min_new_tokens = max_new_tokens), so tokens/s compare like for like. The
`transformers` baseline is `model.generate` on the same left-padded batch with the same
suppressed ids, greedy, same lengths; the script also checks it returns the same tokens.
On a shared CPU pass --threads 1: two threads on two busy cores spend most of their time waiting
for each other. Without --model a randomly initialised Llama (hidden 256, 4 layers, 8k vocabulary) is timed;
speed does not depend on the weights. Targets: batch 32 / batch 1 >= 8x; ours / transformers >= 1.0x.
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from radllm.generation.constraints import disallowed_ids
from radllm.generation.decode import CachedBatch, decode_text, left_pad
from radllm.generation.sampling import DecodingConfig


def random_model(vocab: int, hidden: int, layers: int) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers, num_attention_heads=hidden // 64,
        num_key_value_heads=hidden // 64, max_position_embeddings=2048, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


def synthetic_prompts(n: int, text_vocab: int, image_ids: tuple[int, int], grid: int, max_views: int, seed: int) -> list[list[int]]:
    """bos, 1..max_views blocks of grid*grid ids from `image_ids` [lo, hi), a short instruction: report prompts' shape."""
    g = torch.Generator().manual_seed(seed)
    prompts = []
    for i in range(n):
        image = torch.randint(*image_ids, (grid * grid * (1 + i % max_views),), generator=g).tolist()
        prompts.append([1, *image, *torch.randint(3, text_vocab, (6 + i % 5,), generator=g).tolist()])
    return prompts


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="exported model directory (default: random Llama, see --hidden/--layers)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=128, help="tokens generated per prompt (a phantom report is ~100)")
    parser.add_argument("--max-views", type=int, default=1, help="image blocks per prompt: 1 (phantoms, IU frontal) or 2 (MIMIC-style)")
    parser.add_argument("--grid", type=int, default=16, help="image grid side: prompts hold grid*grid codes per view")
    parser.add_argument("--single-prompts", type=int, default=8, help="prompts timed one at a time for the batch-1 figure")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.model:
        from radllm.generation import load_generator
        from radllm.generation.constraints import report_token_mask

        gen = load_generator(args.model, device="cuda" if torch.cuda.is_available() else "cpu")
        model, eos, pad = gen.model, gen.tokenizer.eos_token_id, gen.pad_id
        allowed = report_token_mask(gen.tokenizer, gen.spec, gen.vocab_size)
        text_vocab = gen.spec.text_vocab_size
        image_ids = (gen.spec.token_offset, gen.spec.token_offset + gen.spec.codebook_size)
    else:
        text_vocab = 8000
        model = random_model(8192, args.hidden, args.layers)
        eos, pad = 2, 0
        allowed = torch.zeros(8192, dtype=torch.bool)
        allowed[3:text_vocab] = True
        allowed[eos] = True
        image_ids = (text_vocab, 8192)
    prompts = synthetic_prompts(args.batch, text_vocab, image_ids, args.grid, args.max_views, seed=0)
    config = DecodingConfig(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)
    ours = lambda batch: decode_text(model, batch, allowed=allowed, eos_id=eos, pad_id=pad, config=config)  # noqa: E731

    ours(prompts[:2])  # warm-up
    t_batch, batched = timed(lambda: ours(prompts))
    single = prompts[: args.single_prompts]
    t_single, one_by_one = timed(lambda: [ours([p])[0] for p in single])

    ids, mask = left_pad(prompts, pad, model.device)
    suppress = disallowed_ids(allowed)

    def hf():
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False,
                suppress_tokens=suppress, eos_token_id=eos, pad_token_id=pad,
            )
        return out[:, ids.shape[1] :].tolist()

    t_hf, reference = timed(hf)
    with torch.inference_mode():
        t_prefill, _ = timed(lambda: CachedBatch(model, prompts, pad, 0))
        t_prefill_single, _ = timed(lambda: [CachedBatch(model, [p], pad, 0) for p in single])
    tokens = args.new_tokens
    rate_batch = len(prompts) * tokens / t_batch
    rate_single = len(single) * tokens / t_single
    rate_hf = len(prompts) * tokens / t_hf
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"model: {params:.1f}M parameters, {torch.get_num_threads()} threads; prompts {min(map(len, prompts))}-{max(map(len, prompts))} tokens; {tokens} new tokens each")
    print(f"{'run':34s} {'tokens/s':>10s}")
    print(f"{'ours, batch 1':34s} {rate_single:10.1f}")
    print(f"{f'ours, batch {len(prompts)}':34s} {rate_batch:10.1f}")
    print(f"{f'transformers generate, batch {len(prompts)}':34s} {rate_hf:10.1f}")
    print(f"batch {len(prompts)} / batch 1: {rate_batch / rate_single:.2f}x (target >= 8)")
    print(f"prompt prefill: {t_prefill:.2f} s of the {t_batch:.2f} s batch-{len(prompts)} run ({100 * t_prefill / t_batch:.0f}%; the same work at batch 1)")
    decode_batch = len(prompts) * tokens / (t_batch - t_prefill)
    decode_single = len(single) * tokens / (t_single - t_prefill_single)
    print(f"decoding phase only (prefill subtracted): batch {len(prompts)} / batch 1: {decode_batch / decode_single:.2f}x")
    print(f"ours / transformers (batch {len(prompts)}): {rate_batch / rate_hf:.2f}x (target >= 1.0)")
    same = batched[: len(single)] == one_by_one and batched == reference
    print(f"identical tokens (batch 1, batch {len(prompts)}, transformers): {same}")


if __name__ == "__main__":
    main()
