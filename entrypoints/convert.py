"""MLflow entry point `convert`: see `mygo convert --help`."""

import sys

from mygo.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
