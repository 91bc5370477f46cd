"""Users' own data sets: checked on registration, stored with their SHA-256, served to workers."""

from service.datasets.parsing import FORMATS, DatasetArrays, read_dataset
from service.datasets.store import REGISTERED_PREFIX, DatasetStore, DatasetView, names_an_id

__all__ = [
    "FORMATS",
    "REGISTERED_PREFIX",
    "DatasetArrays",
    "DatasetStore",
    "DatasetView",
    "names_an_id",
    "read_dataset",
]
