"""dptune: decomposed (low-rank) prompt tuning for frozen language models."""

__version__ = "0.1.0"
