"""MLflow entry point `main`: see `mygo main --help`."""

import sys

from mygo.cli import main

if __name__ == "__main__":
    sys.exit(main(["main", *sys.argv[1:]]))
