"""Write MLproject from the stage table and the CLI's commands (`--check`: fail if it is out of date).

python scripts/write_mlproject.py          # after adding a stage or a knob
python scripts/write_mlproject.py --check  # what tests/test_architecture.py asserts
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mygo.cli import mlproject_text

MLPROJECT = Path(__file__).resolve().parents[1] / "MLproject"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if MLproject differs from the generated text")
    args = parser.parse_args()
    text = mlproject_text()
    if args.check:
        if MLPROJECT.read_text() != text:
            print("MLproject is out of date: run python scripts/write_mlproject.py", file=sys.stderr)
            return 1
        return 0
    MLPROJECT.write_text(text)
    print(f"wrote {MLPROJECT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
