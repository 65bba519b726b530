"""lazarus_nb: watch an internal classifier become readable inside a language model."""
