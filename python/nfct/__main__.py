"""`python -m nfct`: the `nfct` command."""

import sys

from nfct.cli import main

if __name__ == "__main__":
    sys.exit(main())
