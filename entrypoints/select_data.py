"""MLflow entry point `select` (not named select.py: that would shadow the standard library's `select` module)."""

import sys

from mygo.cli import main

if __name__ == "__main__":
    sys.exit(main(["select", *sys.argv[1:]]))
