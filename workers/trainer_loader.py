"""Finds a trainer by name among the installed ``hpo.trainers`` entry points."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from service.trainer_catalog import TRAINER_ENTRY_POINT_GROUP
from workers.trainers.base import Trainer


class UnknownTrainer(LookupError):
    """No installed trainer has that name."""


@cache
def load_trainer(name: str) -> Trainer:
    """An instance of the named trainer, built once per process."""
    matches = entry_points(group=TRAINER_ENTRY_POINT_GROUP, name=name)
    if not matches:
        raise UnknownTrainer(f"no trainer named '{name}' is installed on this worker")
    trainer_class = next(iter(matches)).load()
    trainer: Trainer = trainer_class()
    return trainer
