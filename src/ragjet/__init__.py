"""ragjet: retrieval-augmented generation with its own fast inference engine."""

__version__ = "0.1.0"
