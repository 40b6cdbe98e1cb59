"""Datasets: the MMRec-compatible on-disk format, imports, synthetic data, noise, splits."""

from guider.data.dataset import TEST, TRAIN, VALID, Dataset, DatasetError
from guider.data.mmrec import load_dataset, save_dataset

__all__ = ["Dataset", "DatasetError", "TRAIN", "VALID", "TEST", "load_dataset", "save_dataset"]
