"""Data sources and the `LabeledData` container every later stage reads."""

from .labeled import DataError, DatasetSplits, LabeledData
from .sources import list_datasets, load_dataset

__all__ = ["DataError", "DatasetSplits", "LabeledData", "list_datasets", "load_dataset"]
