"""Scoring predictions against gold: the published B2NER metric and strict span matching (torch-free)."""
