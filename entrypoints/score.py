"""MLflow entry point `score`: see `mygo score --help`."""

import sys

from mygo.cli import main

if __name__ == "__main__":
    sys.exit(main(["score", *sys.argv[1:]]))
