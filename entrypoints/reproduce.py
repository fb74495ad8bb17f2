"""MLflow entry point `reproduce`: see `mygo reproduce --help`."""

import sys

from mygo.cli import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", *sys.argv[1:]]))
