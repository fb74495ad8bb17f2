"""MLflow entry point `lineage`: see `mygo lineage --help`."""

import sys

from mygo.cli import main

if __name__ == "__main__":
    sys.exit(main(["lineage", *sys.argv[1:]]))
