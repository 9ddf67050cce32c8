"""Finding and loading backbones and adapters (torch is imported only when loading)."""
