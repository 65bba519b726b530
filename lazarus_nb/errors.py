"""The one exception type whose message is meant for the user as-is."""


class LazarusError(Exception):
    """Bad input or an unusable resource, described in one sentence; the CLI prints it and exits 2."""
