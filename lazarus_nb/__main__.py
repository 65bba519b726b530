"""``python -m lazarus_nb``: the ``lazarus-nb`` command line."""

import sys

from lazarus_nb.app.cli import main

if __name__ == "__main__":
    sys.exit(main())
