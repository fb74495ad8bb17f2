"""MLflow entry point `compare`: see `mygo compare --help`."""

import sys
from pathlib import Path

# This checkout's mygo/ and configs/, whatever mygo is installed: the code that runs is the project being run.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mygo.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))
