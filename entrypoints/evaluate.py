"""MLflow entry point `evaluate`: see `mygo evaluate --help`."""

import sys

from mygo.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
