"""The ``b2ner`` command line: one thin module per command over the core."""
