"""``python -m backendapi``: the command line (see :mod:`backendapi._cli`)."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
