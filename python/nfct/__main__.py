"""`python -m nfct`: the `nfct` command, as the installed one runs it (`_nfct_launcher`).

Python imports the nfct package before it runs this module; from here on a Ctrl-C is one
line and exit status 130, as with the installed command."""

import sys

from _nfct_launcher import main

if __name__ == "__main__":
    sys.exit(main())
