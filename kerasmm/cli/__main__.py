"""`python -m kerasmm.cli ...`: the same as the `kerasmm` console script."""

import sys

from kerasmm.cli import main

if __name__ == "__main__":
    sys.exit(main())
