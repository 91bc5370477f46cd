"""Webhooks: a signed POST to the study's ``webhook.url`` when its best changes and when it ends.

The trial and study code only enqueue (:func:`trial_finished`, :func:`study_finished`); in the
background, each receiver (the URL's scheme, host and port) has a lane of its own
(``service.webhook_lanes``) that reads what the event needs, signs and delivers it, with a timeout
and a few retries. A receiver that is slow or out of reach delays only the events sent to it,
never another receiver's; one study's events keep their order (one URL, one lane). A failed
delivery is logged, never raised: a report or a completion is never slowed down or refused because
of a receiver. Delivery is best effort: events are kept in memory (bounded: lanes and events per
lane), not in the database, so an API process that stops drops the ones still queued, and an event
past a bound is dropped with a warning.

Each POST carries ``X-HPO-Event``, ``X-HPO-Delivery`` (one id per event, the same on retries),
``X-HPO-Timestamp`` (Unix seconds) and ``X-HPO-Signature: sha256=<hex HMAC-SHA256 of
"<timestamp>." + body under the study's webhook secret>``; the receiver recomputes it and refuses
an old timestamp (replay).

The URL names a host the client chose: addresses on loopback, private, link-local and other
reserved ranges are refused at delivery (server-side request forgery), unless
``HPO_WEBHOOK_ALLOW_PRIVATE`` (one machine, tests), and the POST goes to the address checked
(``service.webhook_transport``: no second DNS lookup to rebind). Redirects are not followed.
Where the network lets the API out only through an HTTP proxy (``HPO_WEBHOOK_PROXY``), the
proxy is asked to open a tunnel to that same address: the receiver's name must resolve on the
API's host, its addresses are checked as above, and TLS runs to the receiver itself.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal
from urllib.parse import urlsplit

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from service.constraints import is_feasible
from service.errors import InvalidSpec
from service.json_logs import log_context, set_log_context
from service.spec.study_spec import StudySpec
from service.spec.webhook import WebhookEvent
from service.webhook_lanes import DeliveryLanes, LaneFull
from service.webhook_transport import Deadline, Proxy, opener

logger = logging.getLogger(__name__)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
TIMEOUT_S = 5.0
RETRY_DELAYS_S = (0.5, 2.0, 8.0)
USER_AGENT = "hpo-service-webhook/1"
# Optuna's KeyError for a study or trial no longer stored (the study was deleted meanwhile).
RECORD_GONE = "Record does not exist."


class RefusedAddress(Exception):
    """The webhook's host resolves to an address deliveries may not go to."""


@dataclass(frozen=True)
class Delivery:
    """One event to deliver: the payload is built in the background, by ``payload()``."""

    url: str
    secret: str = field(repr=False)  # never in a log line
    event: WebhookEvent
    payload: Callable[[], dict[str, Any] | None]
    delivery_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # The log context (study_id, trial_id) of the request that made it: its lane's lines say
    # which study they are about (the ids alone: nothing else of the request is kept).
    log_ids: tuple[int | None, int | None] = field(default_factory=log_context, compare=False)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-HPO-Signature`` value of ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def receiver_of(url: str) -> str:
    """The receiver a URL names, as deliveries are queued by: ``scheme://host:port``. A study's
    URL never changes, so all its events share one receiver, hence one lane and one order."""
    parts = urlsplit(url)
    default_port = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{parts.hostname or ''}:{parts.port or default_port}"


Outcome = Literal["delivered", "given_up", "refused", "dropped"]
OUTCOMES: tuple[Outcome, ...] = ("delivered", "given_up", "refused", "dropped")


class WebhookSender:
    """The process's delivery lanes, one per receiver (each started on its receiver's first
    event); ``on_outcome`` is told each event's outcome (the API counts them for ``/metrics``).
    Log lines name the receiver (scheme, host and port), not the URL: its path or query may
    carry a credential of the receiver's."""

    def __init__(self) -> None:
        self.allow_private = False
        self.proxy: Proxy | None = None
        self.lanes: DeliveryLanes[Delivery] = DeliveryLanes(self._deliver_logged)
        self.on_outcome: Callable[[WebhookEvent, Outcome], None] | None = None

    def enqueue(self, delivery: Delivery) -> None:
        """Queue ``delivery`` on its receiver's lane; never blocks (an event past a bound is
        dropped, with a warning)."""
        receiver = receiver_of(delivery.url)
        try:
            self.lanes.put(receiver, delivery)
        except LaneFull as full:
            logger.warning("webhook %s to %s dropped: %s", delivery.event, receiver, full)
            self._tell(delivery, "dropped")

    def _deliver_logged(self, delivery: Delivery) -> None:
        """Deliver in the lane's thread; whatever goes wrong is logged, so the lane goes on."""
        set_log_context(*delivery.log_ids)
        try:
            self._deliver(delivery)
        except Exception:
            logger.exception("webhook %s to %s failed", delivery.event, receiver_of(delivery.url))
            self._tell(delivery, "given_up")

    def _deliver(self, delivery: Delivery) -> None:
        try:
            payload = delivery.payload()
        except KeyError as error:
            if str(error) != repr(RECORD_GONE):
                raise
            logger.info("webhook %s not sent: its study was deleted", delivery.event)
            return
        if payload is None:
            return
        body = json.dumps({"event": delivery.event, **payload}, default=str).encode()
        receiver = receiver_of(delivery.url)
        for attempt, delay in enumerate((0.0, *RETRY_DELAYS_S), start=1):
            time.sleep(delay)
            try:
                status = self._post(delivery, body)
            except RefusedAddress as refused:
                logger.warning("webhook %s not sent: %s", delivery.event, refused)
                self._tell(delivery, "refused")
                return
            except (OSError, urllib.error.URLError) as error:
                status, detail = None, str(error)
            else:
                detail = f"HTTP {status}"
            if status is not None and 200 <= status < 300:
                logger.info("webhook %s delivered to %s", delivery.event, receiver)
                self._tell(delivery, "delivered")
                return
            logger.warning("webhook %s attempt %s failed: %s", delivery.event, attempt, detail)
        logger.error("webhook %s to %s given up", delivery.event, receiver)
        self._tell(delivery, "given_up")

    def _tell(self, delivery: Delivery, outcome: Outcome) -> None:
        if self.on_outcome is not None:
            self.on_outcome(delivery.event, outcome)

    def _post(self, delivery: Delivery, body: bytes) -> int:
        addresses = check_address(delivery.url, self.allow_private)
        targets: list[str | None] = [None] if addresses is None else list(addresses)
        return post_to_first_answering(targets, _signed_request(delivery, body), self.proxy)


def post_to_first_answering(
    targets: list[str | None], request: urllib.request.Request, proxy: Proxy | None = None
) -> int:
    """POST ``request`` to each address in turn (``None``: the host's own resolution) until
    one answers, as urllib tries a host's addresses, through ``proxy``'s tunnels where given;
    the answer's status. ``OSError`` (or ``URLError``) from the last when none answers;
    ``TimeoutError`` where no whole answer came within ``TIMEOUT_S``, all addresses together
    (a receiver that sends its answer a byte at a time is cut off there)."""
    if not targets:
        raise RefusedAddress(f"{request.full_url}: no address to post to")
    deadline = Deadline(TIMEOUT_S)
    try:
        return _first_answer(targets, request, proxy, deadline)
    finally:
        deadline.cancel()


def _first_answer(
    targets: list[str | None],
    request: urllib.request.Request,
    proxy: Proxy | None,
    deadline: Deadline,
) -> int:
    unreachable: OSError | None = None
    for address in targets:
        try:
            status = _post_once(opener(address, proxy, deadline), request)
        except OSError as error:  # URLError too: this address did not answer, try the next
            unreachable = error
        except http.client.HTTPException as error:  # an answer cut short, or no HTTP
            unreachable = ConnectionError(f"no HTTP answer: {error!r}")
        else:
            if not deadline.passed:
                return status
        if deadline.passed:
            raise TimeoutError(f"no whole answer within {TIMEOUT_S:g} s")
    assert unreachable is not None
    raise unreachable


def _post_once(through: urllib.request.OpenerDirector, request: urllib.request.Request) -> int:
    """The status of the answer to ``request``."""
    try:
        with through.open(request, timeout=TIMEOUT_S) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:  # an answer all the same (4xx, 5xx, redirect)
        return int(error.code)


def _signed_request(delivery: Delivery, body: bytes) -> urllib.request.Request:
    timestamp = str(int(time.time()))
    return urllib.request.Request(
        delivery.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-HPO-Event": delivery.event,
            "X-HPO-Delivery": delivery.delivery_id,
            "X-HPO-Timestamp": timestamp,
            "X-HPO-Signature": sign(delivery.secret, timestamp, body),
        },
    )


def check_address(url: str, allow_private: bool) -> list[str] | None:
    """``RefusedAddress`` unless every address of the URL's host is a public one (``OSError``
    where the name does not resolve now: tried again); the addresses to connect to, in DNS
    order (``None`` where private ones are allowed: the host's own resolution then)."""
    if allow_private:
        return None
    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as error:  # an OSError: tried again, as a refused connection is
        raise OSError(f"cannot resolve {host}: {error}") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]))
        if not _deliverable(address):
            raise RefusedAddress(
                f"{host} resolves to {address}, not a public address (HPO_WEBHOOK_ALLOW_PRIVATE)"
            )
    # The POST goes to these: no second lookup (webhook_transport).
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _deliverable(address: IPAddress) -> bool:
    """Whether deliveries may go to ``address``: a public one, not multicast, and, for an IPv6
    address that carries an IPv4 one (mapped, compatible, 6to4 or NAT64's ``64:ff9b::/96``,
    which Python calls global whatever they carry), the IPv4 one public too."""
    carried = _carried_ipv4(address)
    if carried is not None and not _deliverable(carried):
        return False
    return address.is_global and not address.is_multicast


# IPv6 prefixes whose last 32 bits are an IPv4 address: NAT64's well-known one, IPv4-translated
# (RFC 2765) and IPv4-compatible (deprecated); mapped and 6to4 have ipaddress' own properties.
_CARRYING_IPV4 = tuple(
    ipaddress.IPv6Network(prefix) for prefix in ("64:ff9b::/96", "::ffff:0:0:0/96", "::/96")
)
# NAT64's local-use prefix (RFC 8215): the IPv4 address lies split around its u-octet, and the
# network behind it is the operator's own: never a receiver's.
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")


def _carried_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries, where it carries one (a local-use NAT64 address
    carries an unspecified one: 0.0.0.0, which is no receiver's)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None or address.sixtofour is not None:
        return address.ipv4_mapped or address.sixtofour
    if address in _LOCAL_NAT64:
        return ipaddress.IPv4Address(0)
    if any(address in prefix for prefix in _CARRYING_IPV4) and int(address) > 1:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def check_receiver(url: str) -> None:
    """``InvalidSpec`` on ``webhook.url`` where the URL's host is, as written, one deliveries
    may not go to (a loopback, private or other non-public address, or ``localhost``): known
    when the study is submitted, not only at its first delivery. A name is checked at each
    delivery (what it resolves to may change)."""
    if sender().allow_private:
        return
    host = (urlsplit(url).hostname or "").rstrip(".")  # "localhost." is localhost
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost" and not host.endswith(".localhost"):  # loopback by definition
            return
        address = ipaddress.ip_address("127.0.0.1")
    if not _deliverable(address):
        problem = (
            f"{host} is not a public address: deliveries go to public ones only "
            "(HPO_WEBHOOK_ALLOW_PRIVATE, on one machine)"
        )
        raise InvalidSpec(problem, field="webhook.url")


@cache
def sender() -> WebhookSender:
    """This process's sender (its lanes are the process's, like its logging)."""
    return WebhookSender()


def configure_webhooks(allow_private: bool, proxy_url: str | None = None) -> None:
    """Set this process's address policy and proxy (the API does, from
    ``HPO_WEBHOOK_ALLOW_PRIVATE`` and ``HPO_WEBHOOK_PROXY``)."""
    sender().allow_private = allow_private
    sender().proxy = None if proxy_url is None else Proxy.from_url(proxy_url)


def trial_finished(
    storage: BaseStorage, spec: StudySpec, study_id: int, trial_id: int, state: TrialState
) -> None:
    """A trial ended: if it completed and the study wants ``best_changed``, check in the
    background whether it became the best when it finished, and tell the receiver so."""
    hook = spec.webhook
    if hook is None or "best_changed" not in hook.events or state != TrialState.COMPLETE:
        return
    if spec.multi_objective:
        return  # no single best: a Pareto front

    def payload() -> dict[str, Any] | None:
        became_best = _became_best(storage, spec, study_id, trial_id)
        if became_best is None:
            return None
        return {"study_id": study_id, "study_name": spec.name, **_trial_fields(became_best)}

    sender().enqueue(Delivery(str(hook.url), hook.secret, "best_changed", payload))


def study_finished(spec: StudySpec, study_id: int, state: str, storage: BaseStorage) -> None:
    """The study became complete or stopped: tell the receiver, with the best trial."""
    hook = spec.webhook
    if hook is None or "study_finished" not in hook.events:
        return

    def payload() -> dict[str, Any]:
        best = None if spec.multi_objective else _best_trial(storage, spec, study_id)
        return {
            "study_id": study_id,
            "study_name": spec.name,
            "state": state,
            "best": _trial_fields(best) if best is not None else None,
        }

    sender().enqueue(Delivery(str(hook.url), hook.secret, "study_finished", payload))


def _best_trial(
    storage: BaseStorage, spec: StudySpec, study_id: int
) -> optuna.trial.FrozenTrial | None:
    try:
        if spec.constraints:  # feasible trials only: Optuna's study applies the constraints
            optuna_name = storage.get_study_name_from_id(study_id)  # not always spec.name
            return optuna.load_study(study_name=optuna_name, storage=storage).best_trial
        return storage.get_best_trial(study_id)
    except ValueError:  # no complete (feasible) trial
        return None


def _became_best(
    storage: BaseStorage, spec: StudySpec, study_id: int, trial_id: int
) -> optuna.trial.FrozenTrial | None:
    """The trial, where it was the study's best when it finished (feasible, and better than
    every feasible trial finished before it), even where a later one has beaten it by the time
    its event is delivered: each best the study had is told. Most trials are settled by the
    best alone; the whole history is read for the best itself, and where the best finished
    after this trial."""
    best = _best_trial(storage, spec, study_id)
    if best is None:
        return None
    trial = best if best._trial_id == trial_id else storage.get_trial(trial_id)
    if not is_feasible(trial) or not _finished_before(trial, best):
        return None  # infeasible, or a better one (or as good) had finished before it
    # The best itself is checked too: the database names one of several equal ones, and a trial
    # that only ties an earlier best did not become the best.
    complete = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.COMPLETE,))
    earlier = [t for t in complete if is_feasible(t) and _finished_before(t, trial)]
    value = trial.value
    assert value is not None
    if all(_better(value, t.value, spec.direction) for t in earlier if t._trial_id != trial_id):
        return trial
    return None


def _finished_before(trial: optuna.trial.FrozenTrial, other: optuna.trial.FrozenTrial) -> bool:
    """Whether ``trial`` finished no later than ``other`` (a time unknown counts as earlier; of
    two at one time, the lower number)."""
    if trial.datetime_complete is None or other.datetime_complete is None:
        return trial.datetime_complete is None
    return (trial.datetime_complete, trial.number) <= (other.datetime_complete, other.number)


def _better(value: float, other: float | None, direction: str) -> bool:
    if other is None:
        return True
    return value < other if direction == "minimize" else value > other


def _trial_fields(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    return {
        "trial_id": trial._trial_id,
        "number": trial.number,
        "value": trial.value,
        "params": trial.params,
    }
