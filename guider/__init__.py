"""GUIDER reproducibility suite: multimodal recommenders, denoising, evaluation."""

__version__ = "0.4.0"
