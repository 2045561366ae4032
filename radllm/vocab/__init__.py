"""The LLM's vocabulary: a text tokenizer extended with `<boi>`, `<eoi>` and one token per VQ code.

- `extend`: append the visual tokens to any local HF tokenizer and write the tokenizer directory
  (HF files + `radllm.json`), the library behind `radllm build-tokenizer --base`.
- `sentencepiece_tokenizer`: train a SentencePiece text tokenizer on reports instead
  (`--train-sentencepiece`), then extend it the same way.
- `load`: load a tokenizer directory and verify it against its spec (and against a VQ-GAN).
- `codec`: report text and code grids to token ids and back.
"""

from radllm.vocab.codec import decode_report, encode_report, image_codes_from_ids, image_token_ids
from radllm.vocab.load import load_tokenizer, verify_tokenizer, verify_vq

__all__ = [
    "decode_report",
    "encode_report",
    "image_codes_from_ids",
    "image_token_ids",
    "load_tokenizer",
    "verify_tokenizer",
    "verify_vq",
]
