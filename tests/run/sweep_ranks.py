"""The sweep command under ``mlx.launch`` (tests/run/test_sweep.py): ``mlx.launch -n 2 --python PYTHON
tests/run/sweep_ranks.py sweep ...`` runs ``lazarus-nb`` once per rank, as ``.venv/bin/lazarus-nb`` would."""

import sys

from lazarus_nb.app.cli import main

sys.exit(main())
