"""Regenerate the configuration reference from the typed run configs.

    python tools/config_reference.py            # write docs/configuration.md
    python tools/config_reference.py --check    # exit 1 (and say so) when it is out of date

The library side is `radllm.config_reference` (the list of documented configs lives there).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from radllm import atomic
from radllm.config_reference import REFERENCE_PATH, render_reference

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / REFERENCE_PATH), help=f"output Markdown file (default {REFERENCE_PATH})")
    parser.add_argument("--check", action="store_true", help="only compare with --out; exit 1 when it differs")
    args = parser.parse_args(argv)
    text = render_reference()
    out = Path(args.out)
    if args.check:
        if not out.is_file() or out.read_text(encoding="utf-8") != text:
            print(f"{out} is out of date: run `python tools/config_reference.py`", file=sys.stderr)
            return 1
        return 0
    atomic.write_text(out, text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
