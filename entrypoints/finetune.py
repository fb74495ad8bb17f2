"""MLflow entry point `finetune`: see `mygo finetune --help`."""

import sys

from mygo.cli import main

if __name__ == "__main__":
    sys.exit(main(["finetune", *sys.argv[1:]]))
