"""The one exception type whose message is meant for the user as-is.
"""

from __future__ import annotations


class LazarusError(Exception):
    """Bad input or an unusable resource, described in one sentence; the CLI prints it and exits 2."""
