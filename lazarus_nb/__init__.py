"""lazarus_nb: watch an internal classifier become readable inside a language model.

Import this package before ``mlx``: it first loads an optimized BLAS (see ``lazarus_nb.model.blas``).

The surface a notebook needs: ``import lazarus_nb as L``; ``L.load_model(name)``; the sub-packages along the data
flow, imported on first use: ``L.model``, ``L.data``, ``L.measure``, ``L.train``, ``L.results``, ``L.show``,
``L.run`` (the steps), ``L.app`` (the panels), and ``L.files`` (strict JSON results on disk).
"""

import os as _os

from lazarus_nb.model import blas as _blas

# transformers is used for tokenizers only; without PyTorch it prints an advisory on every import that
# reads like an error to a newcomer.
_os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

_blas.preload()

from lazarus_nb.errors import LazarusError  # noqa: E402
from lazarus_nb.exports import lazy  # noqa: E402
from lazarus_nb.model.load import DEFAULT_MODEL, EMBEDDED, LoadedModel, load_model  # noqa: E402

_SUBPACKAGES = ("model", "data", "measure", "train", "results", "show", "run", "app", "files")
__all__ = ["DEFAULT_MODEL", "EMBEDDED", "LazarusError", "LoadedModel", "load_model", *_SUBPACKAGES]
__getattr__ = lazy(__name__, {name: f"{__name__}.{name}" for name in _SUBPACKAGES})
__version__ = "0.1.0"
