"""MLflow entry point `sweep`: see `mygo sweep --help`."""

import sys

from mygo.cli import main

if __name__ == "__main__":
    sys.exit(main(["sweep", *sys.argv[1:]]))
