"""Write configs/<stage>.yaml and configs/tracking/default.yaml from the knobs' declarations in mygo/knobs/
(`--check`: fail if any is out of date).

python scripts/write_configs.py          # after adding or changing a knob
python scripts/write_configs.py --check  # what tests/test_architecture.py asserts
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mygo.knobs import config_texts

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a config differs from its generated text")
    args = parser.parse_args()
    stale = [
        name
        for name, text in config_texts().items()
        if not (CONFIGS / name).is_file() or (CONFIGS / name).read_text() != text
    ]
    if args.check:
        for name in stale:
            print(f"configs/{name} is out of date: run python scripts/write_configs.py", file=sys.stderr)
        return 1 if stale else 0
    for name, text in config_texts().items():
        (CONFIGS / name).write_text(text)
    print(f"wrote {len(config_texts())} configs under {CONFIGS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
