"""Print radllm's layer check: imports per layer, import cycles, upward imports (docs/architecture.md).

    python tools/check_architecture.py        # exit 1 when a cycle or upward import is not allow-listed

The check itself, its layer mapping and its allow-lists are tests/test_architecture.py (standard
library only); this script loads that file by path and prints its `report()`, so a reviewer gets
the test's exact verdict without pytest.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

CHECK = Path(__file__).resolve().parent.parent / "tests" / "test_architecture.py"


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=f"The check: {CHECK}").parse_args(argv)
    spec = importlib.util.spec_from_file_location("test_architecture", CHECK)
    assert spec is not None and spec.loader is not None
    check = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = check  # dataclasses look their module up while the file runs
    spec.loader.exec_module(check)
    text, ok = check.report()
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
