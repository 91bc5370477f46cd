"""A worker's claim of the trial it was sent, and what a claim that did not happen means.

A claim refused as gone (404, 409: another holder has the trial, or it ended) drops the message:
the trial is not this worker's. A claim that did not happen for any other reason the worker can
outwait (the service out of reach or failing past the client's retries, 5xx; or this worker's
token refused, 401/403) leaves the trial unstarted, its lease unclaimed: ``ClaimNotMade``, and
the Celery task sends the message back to the queue for later (``task.retry``, with the delay of
:func:`claim_retry_delay_s`) instead of letting Celery acknowledge it. Dropped, the trial would
wait, counted as running, until the service's ``dispatch_timeout_s`` expired its lease.

This does not fight the service's own re-sending: the service sends again only what the broker
never took, and fails and retries a sent trial only once ``dispatch_timeout_s`` passes unclaimed,
as a new trial; a message of the old one that comes back after that is refused as gone.
"""

from __future__ import annotations

import logging
from typing import Any

from client import HPOError, HPOJSONClient, ServiceUnreachable, TrialGone
from service.ids import MAX_ID

logger = logging.getLogger(__name__)
CLAIM_RETRY_DELAY_S = 15.0  # the first wait before a message whose claim did not happen returns
CLAIM_RETRY_MAX_DELAY_S = 300.0  # doubling each time, up to this
TOKEN_REFUSED = (401, 403)
TOKEN_HELP = (
    "HPO_TOKEN must be a worker token the service accepts (one of HPO_WORKER_TOKENS, or one "
    "made with `hpo token create --worker`)"
)
# The largest trial id the id columns hold: one no study reaches, so a claim of it only tests
# the token (trial 0 is refused as no id at all: 422, not the 404 expected).
NO_SUCH_TRIAL = MAX_ID


class ClaimNotMade(Exception):
    """The trial's claim did not happen and the trial has not started: send its message back."""

    def __init__(self, trial_id: int, cause: Exception, token_refused: bool) -> None:
        what = "the service refused this worker's token" if token_refused else "no claim"
        super().__init__(f"trial {trial_id} not claimed ({what}): {cause}")
        self.trial_id = trial_id
        self.token_refused = token_refused


class WorkerTokenRefused(Exception):
    """The service refuses this worker's token: every claim would be refused."""


def claim_trial(client: HPOJSONClient, trial_id: int, holder: str) -> dict[str, Any] | None:
    """Claim the trial: the claim's answer; ``None`` where it is gone (not this worker's to
    run); ``ClaimNotMade`` where the service did not answer, failed or refused the token."""
    try:
        return client.claim(trial_id, holder)
    except TrialGone as gone:
        logger.info("trial %s is not this worker's to run (%s): dropped", trial_id, gone)
        return None
    except ServiceUnreachable as unreachable:
        logger.warning("trial %s not claimed, back to the queue: %s", trial_id, unreachable)
        raise ClaimNotMade(trial_id, unreachable, token_refused=False) from unreachable
    except HPOError as refused:
        if refused.status in TOKEN_REFUSED:
            logger.error(
                "trial %s not claimed, back to the queue: the service refused this worker's "
                "token (%s): %s",
                trial_id,
                refused,
                TOKEN_HELP,
            )
            raise ClaimNotMade(trial_id, refused, token_refused=True) from refused
        if refused.status >= 500:
            logger.warning("trial %s not claimed, back to the queue: %s", trial_id, refused)
            raise ClaimNotMade(trial_id, refused, token_refused=False) from refused
        raise


def claim_retry_delay_s(retries: int) -> float:
    """How long a message whose claim did not happen ``retries`` times before waits."""
    return min(CLAIM_RETRY_MAX_DELAY_S, CLAIM_RETRY_DELAY_S * 2.0 ** min(retries, 16))


def check_worker_token(client: HPOJSONClient) -> None:
    """``WorkerTokenRefused`` where the service refuses the client's token for claims (a
    wrong, revoked or user token), which it answers for a trial that cannot exist (404 with
    a worker's token). A service out of reach is logged: the claims outwait it."""
    try:
        client.claim(NO_SUCH_TRIAL, "token-check")
    except TrialGone:
        return
    except ServiceUnreachable as unreachable:
        logger.warning("the worker's token was not checked: %s", unreachable)
        return
    except HPOError as refused:
        if refused.status in TOKEN_REFUSED:
            raise WorkerTokenRefused(
                f"the service at {client.url} refuses this worker's token ({refused}): {TOKEN_HELP}"
            ) from None
        logger.warning("the worker's token check was answered %s", refused)
        return
    logger.warning("the worker's token check claimed trial %s", NO_SUCH_TRIAL)
