"""Finetuning B2NER adapters: the published training format, the training loop, checkpoints (imports torch)."""
