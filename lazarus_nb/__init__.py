"""lazarus_nb: watch an internal classifier become readable inside a language model.

Import this package before ``mlx``: it first loads an optimized BLAS (see ``lazarus_nb.blas``).
"""

import os as _os

from lazarus_nb.model import blas as _blas

# transformers is used for tokenizers only; without PyTorch it prints an advisory on every import that
# reads like an error to a newcomer.
_os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

_blas.preload()

from lazarus_nb.errors import LazarusError  # noqa: E402
from lazarus_nb.model.load import DEFAULT_MODEL, EMBEDDED, LoadedModel, load_model  # noqa: E402

__all__ = ["DEFAULT_MODEL", "EMBEDDED", "LazarusError", "LoadedModel", "load_model"]
__version__ = "0.1.0"
