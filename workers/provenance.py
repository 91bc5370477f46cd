"""What a running trial records about itself: its trainer's package, its data, its best weights.

The trial runner opens a ``TrialContext`` around the trainer's ``train`` call (a context variable,
so one process runs one trial at a time and nothing is global). Code inside the trainer finds it
with ``current_trial()``: ``load_split`` notes the data it loaded there (and the runner sends it
to the service at once), ``keep_best`` (``workers/checkpoints.py``) keeps the best epoch's weights.
Outside a trial (unit tests, study jobs) there is no context and both do nothing more.

``registered_datasets(fetch)`` lets code outside a trial (a study job, a user's script) read
registered data sets too: ``with registered_datasets(DatasetCache(client).fetch): load_split(...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from service.trainer_catalog import TRAINER_ENTRY_POINT_GROUP

# Fetches a registered data set: reference → (SHA-256, format, label column, local file path).
DatasetFetcher = Callable[[str], tuple[str, str, str | None, str]]


@dataclass(frozen=True)
class DataProvenance:
    """The data a trial trained on: its content hash and its split, fixed by ``split_seed``."""

    dataset: str
    data_sha256: str
    split_seed: int
    split_sizes: dict[str, int]
    split_sha256: str
    num_features: int
    num_classes: int
    # Kept with the trial's checkpoint, not sent as provenance (see ``SplitDataset``).
    feature_mean: tuple[float, ...] = ()
    feature_scale: tuple[float, ...] = ()
    classes: tuple[str, ...] = ()

    def fields(self) -> dict[str, Any]:
        """The fields the service records (``POST /trials/{id}/provenance``)."""
        keys = ("dataset", "data_sha256", "split_seed", "split_sizes", "split_sha256")
        return {key: getattr(self, key) for key in keys}


@dataclass
class BestWeights:
    """The weights (CPU copies) of the epoch with the lowest validation loss so far."""

    value: float = float("inf")
    state: dict[str, Any] | None = None
    # The model's input and output sizes, as the trainer stated them (its own data: the
    # built-in data sets' are known from their split).
    num_features: int | None = None
    num_classes: int | None = None


@dataclass
class TrialContext:
    """One running trial, as its trainer's helpers see it."""

    trial_id: int
    trainer: str
    params: dict[str, Any]
    settings: dict[str, Any]
    seed: int
    fetch_dataset: DatasetFetcher | None = None
    on_data: Callable[[DataProvenance], None] | None = None
    data: DataProvenance | None = None
    best: BestWeights = field(default_factory=BestWeights)

    def record_data(self, data: DataProvenance) -> None:
        """Note the data the trainer loaded (the first time, or when it changes) and pass it on."""
        if data == self.data:
            return
        self.data = data
        if self.on_data is not None:
            self.on_data(data)


_CURRENT: ContextVar[TrialContext | None] = ContextVar("hpo_trial", default=None)
_DATASET_SOURCE: ContextVar[DatasetFetcher | None] = ContextVar("hpo_datasets", default=None)


def current_trial() -> TrialContext | None:
    """The trial running in this context, if any."""
    return _CURRENT.get()


@contextmanager
def trial_context(context: TrialContext) -> Iterator[TrialContext]:
    """Make ``context`` the current trial (and its fetcher the data source) inside the block."""
    token = _CURRENT.set(context)
    try:
        with registered_datasets(context.fetch_dataset):
            yield context
    finally:
        _CURRENT.reset(token)


def dataset_source() -> DatasetFetcher | None:
    """How registered data sets are fetched in this context, if they can be."""
    return _DATASET_SOURCE.get()


@contextmanager
def registered_datasets(fetch: DatasetFetcher | None) -> Iterator[None]:
    """Read registered data sets through ``fetch`` inside the block."""
    token = _DATASET_SOURCE.set(fetch)
    try:
        yield
    finally:
        _DATASET_SOURCE.reset(token)


@cache
def trainer_distribution(name: str) -> tuple[str | None, str | None]:
    """The package (distribution) that provides the trainer entry point ``name``, and its version.
    Read once per process, as the trainer itself is loaded once (``load_trainer``): a scan of every
    installed distribution's metadata costs about 5 ms, on every trial otherwise."""
    for entry_point in entry_points(group=TRAINER_ENTRY_POINT_GROUP, name=name):
        dist = entry_point.dist
        if dist is not None:
            return dist.metadata["Name"], dist.version
    return None, None
