"""The universal entity taxonomy: loading and validating the bundled data, search, and label suggestions.

Torch-free and fast: ``b2ner taxonomy`` answers interactively.
"""
