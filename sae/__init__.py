"""sae: share faces as sparse codes on convolutional groups, with keys that control who sees what."""

__version__ = "0.1.0"
