"""lazarus_nb: watch an internal classifier become readable inside a language model.

Import this package before ``mlx``: it first loads an optimized BLAS (see ``lazarus_nb.blas``).
"""

from . import blas as _blas

_blas.preload()

from .errors import LazarusError  # noqa: E402
from .models import DEFAULT_MODEL, EMBEDDED, LoadedModel, load_model  # noqa: E402

__all__ = ["DEFAULT_MODEL", "EMBEDDED", "LazarusError", "LoadedModel", "load_model"]
__version__ = "0.1.0"
