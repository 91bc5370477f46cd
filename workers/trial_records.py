"""The trial runner's side of provenance and checkpoints: what it sends besides epochs.

``open_records`` builds the trial's ``TrialContext`` and states at once its seed and trainer
(package and version of the distribution providing the entry point); the data's hashes and split
follow as soon as the trainer loads them. Both go through ``send``: the runner hands them to the
trial's report pipeline, which sends them with the next report or the completion
(``workers/report_pipeline.py``).
``upload_checkpoint`` sends the best epoch's weights before the trial is completed (while its
lease still holds).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from client import HPOError, HPOJSONClient
from workers.checkpoints import checkpoint_bytes
from workers.dataset_cache import DatasetCache
from workers.provenance import DataProvenance, TrialContext, trainer_distribution
from workers.trainers.base import TrialRun

logger = logging.getLogger(__name__)
# Records what the worker states about the trial (provenance fields) with the service.
ProvenanceSender = Callable[[dict[str, Any]], None]


def open_records(
    client: HPOJSONClient, run: TrialRun, trainer: str, send: ProvenanceSender
) -> TrialContext:
    """The trial's context; its seed and trainer handed to ``send`` at once."""

    def send_data(data: DataProvenance) -> None:
        send(data.fields())

    context = TrialContext(
        trial_id=run.trial_id,
        trainer=trainer,
        params=run.params,
        settings=run.settings,
        seed=run.seed,
        fetch_dataset=DatasetCache(client).fetch,
        on_data=send_data,
    )
    package, version = trainer_distribution(trainer)
    stated: dict[str, Any] = {"seed": run.seed, "trainer": trainer}
    stated.update(trainer_package=package, trainer_version=version)
    send({k: v for k, v in stated.items() if v is not None})
    return context


def upload_checkpoint(client: HPOJSONClient, context: TrialContext, lease: str) -> None:
    """Send the trial's best weights, if the trainer kept any. A file the service refuses (too
    large, say) is logged, and the trial completes without it."""
    content = checkpoint_bytes(context)
    if content is None:
        return
    try:
        client.put_checkpoint(context.trial_id, content, lease)
    except HPOError as refused:
        if refused.status not in (413, 422):
            raise
        logger.warning("trial %s: checkpoint refused: %s", context.trial_id, refused)
