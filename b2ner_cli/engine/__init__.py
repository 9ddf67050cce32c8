"""Turning instructions into answers: batching and generation.

``base`` and ``batching`` are torch-free; ``hf`` (the transformers generator) imports torch.
"""
