"""The trial runner's side of provenance and checkpoints: what it sends besides epochs.

``open_records`` builds the trial's ``TrialContext`` and states at once its seed and trainer
(package and version of the distribution providing the entry point); the data's hashes and split
follow as soon as the trainer loads them. Both go through ``send``: the runner hands them to the
trial's report pipeline, which sends them with the next report or the completion
(``workers/report_pipeline.py``).
``upload_checkpoint`` sends the best epoch's weights before the trial is completed (while its
lease still holds), best-effort: a trial whose checkpoint did not upload completes without it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from client import HPOJSONClient, ServiceUnreachable, TrialGone
from workers.checkpoints import checkpoint_bytes
from workers.dataset_cache import DEFAULT_CACHE_BYTES, DatasetCache
from workers.provenance import DataProvenance, TrialContext, trainer_distribution
from workers.trainers.base import TrialRun

logger = logging.getLogger(__name__)
# Records what the worker states about the trial (provenance fields) with the service.
ProvenanceSender = Callable[[dict[str, Any]], None]


def open_records(
    client: HPOJSONClient,
    run: TrialRun,
    trainer: str,
    send: ProvenanceSender,
    dataset_cache_bytes: int = DEFAULT_CACHE_BYTES,
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
        fetch_dataset=DatasetCache(
            client, study_id=run.study_id, limit_bytes=dataset_cache_bytes
        ).fetch,
        on_data=send_data,
    )
    package, version = trainer_distribution(trainer)
    stated: dict[str, Any] = {"seed": run.seed, "trainer": trainer}
    stated.update(trainer_package=package, trainer_version=version)
    send({k: v for k, v in stated.items() if v is not None})
    return context


def upload_checkpoint(client: HPOJSONClient, context: TrialContext, lease: str) -> None:
    """Send the trial's best weights, if the trainer kept any. The checkpoint is optional: a
    file the service refuses (too large, say), an answer that is not the service's, or a
    service error past the client's retries is logged, and the trial completes without it. A
    trial taken away, or a service out of reach, ends here (the completion could not go
    either)."""
    try:
        content = checkpoint_bytes(context)
        if content is not None:
            client.put_checkpoint(context.trial_id, content, lease)
    except (TrialGone, ServiceUnreachable):
        raise
    except Exception as error:
        logger.warning(
            "trial %s: completed without its checkpoint, which did not upload: %s: %s",
            context.trial_id,
            type(error).__name__,
            error,
        )
