"""Datasets: the MMRec-compatible on-disk format, imports, synthetic data, noise, splits."""

from guider.data.format.dataset import TEST, TRAIN, VALID, Dataset, DatasetError
from guider.data.format.mmrec import load_dataset, save_dataset

__all__ = ["Dataset", "DatasetError", "TRAIN", "VALID", "TEST", "load_dataset", "save_dataset"]
