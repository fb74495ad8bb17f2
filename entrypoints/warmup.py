"""MLflow entry point `warmup`: see `mygo warmup --help`."""

import sys

from mygo.cli import main

if __name__ == "__main__":
    sys.exit(main(["warmup", *sys.argv[1:]]))
