"""Webhook signatures, the address policy against request forgery, and the masked secret."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.request import Request

import pytest

from service import webhooks
from service.spec.study_spec import StudySpec
from service.spec.webhook import MASKED_SECRET, STORED_SPEC_CONTEXT
from service.webhook_transport import opener
from service.webhooks import RefusedAddress, check_address, post_to_first_answering, sign
from tests.support.receivers import answering_server, certified, trickling_server

SECRET = "0123456789abcdef-secret"


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"event": "best_changed"}'
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, "1700000000", body) == f"sha256={expected}"
    assert sign(SECRET, "1700000001", body) != sign(SECRET, "1700000000", body)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.7/hook",
        "http://169.254.169.254/latest/meta-data",  # a cloud's metadata service
        "http://[::1]/hook",
        "http://0.0.0.0/hook",
        # IPv6 addresses carrying a loopback IPv4 one (Python calls them global):
        "http://[::127.0.0.1]/hook",  # IPv4-compatible
        "http://[64:ff9b::7f00:1]/hook",  # NAT64
        "http://[2002:7f00:1::1]/hook",  # 6to4
    ],
)
def test_private_addresses_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(RefusedAddress, match="not a public address"):
        check_address(url, allow_private=False)
    check_address(url, allow_private=True)


def test_a_public_address_is_allowed() -> None:
    check_address("https://93.184.215.14/hook", allow_private=False)


def test_the_secret_is_masked_except_in_the_services_own_record() -> None:
    spec = StudySpec.model_validate(
        {
            "name": "hooked",
            "space": {"x": {"type": "float", "low": 0, "high": 1}},
            "webhook": {"url": "https://example.org/hook", "secret": SECRET},
        }
    )
    assert spec.model_dump(mode="json")["webhook"]["secret"] == MASKED_SECRET
    assert SECRET not in spec.model_dump_json()
    stored = spec.model_dump_json(context=STORED_SPEC_CONTEXT)
    assert StudySpec.model_validate_json(stored).webhook == spec.webhook
    assert spec.webhook is not None and spec.webhook.events == ["best_changed", "study_finished"]


def test_the_post_goes_to_the_address_checked_with_the_urls_host() -> None:
    """``.invalid`` never resolves: only a connection to the pinned address can reach the server."""
    hosts: list[str] = []
    server = answering_server(hosts)
    url = f"http://hooks.invalid:{server.server_port}/hook"
    with opener("127.0.0.1").open(Request(url, data=b"{}", method="POST"), timeout=5) as answer:
        assert answer.status == 204
    server.server_close()
    assert hosts == [f"hooks.invalid:{server.server_port}"]


def test_each_address_checked_is_tried_until_one_answers() -> None:
    hosts: list[str] = []
    server = answering_server(hosts)  # on 127.0.0.1 only: 127.0.0.2 refuses the connection
    url = f"http://hooks.invalid:{server.server_port}/hook"
    request = Request(url, data=b"{}", method="POST")
    assert post_to_first_answering(["127.0.0.2", "127.0.0.1"], request) == 204
    server.server_close()
    assert hosts == [f"hooks.invalid:{server.server_port}"]
    with pytest.raises(OSError):
        post_to_first_answering(["127.0.0.2"], request)


def test_the_address_to_connect_to_is_the_one_checked() -> None:
    assert check_address("https://93.184.215.14/hook", allow_private=False) == ["93.184.215.14"]
    assert check_address("http://127.0.0.1/hook", allow_private=True) is None


def test_an_answer_sent_a_byte_at_a_time_is_cut_off_at_the_attempt_s_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each byte came within the socket's timeout, so one attempt lasted as long as the receiver
    went on (60 s seen), then counted as delivered (its status line said 200)."""
    monkeypatch.setattr(webhooks, "TIMEOUT_S", 1.0)
    listener = trickling_server(for_s=20)
    url = f"http://hooks.invalid:{listener.getsockname()[1]}/hook"
    with pytest.raises(TimeoutError, match="no whole answer within 1 s"):
        post_to_first_answering(["127.0.0.1"], Request(url, data=b"{}", method="POST"))
    listener.close()


def test_an_https_answer_sent_a_byte_at_a_time_is_cut_off_at_the_deadline_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """TLS took the socket the deadline watched over (its shutdown a no-op): an https attempt
    lasted as long as the receiver went on."""
    monkeypatch.setattr(webhooks, "TIMEOUT_S", 1.0)
    tls = certified("hooks.invalid", monkeypatch, tmp_path_factory)
    listener = trickling_server(for_s=20, tls=tls)
    url = f"https://hooks.invalid:{listener.getsockname()[1]}/hook"
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="no whole answer within 1 s"):
        post_to_first_answering(["127.0.0.1"], Request(url, data=b"{}", method="POST"))
    assert time.monotonic() - started < 10  # cut at the deadline, not at the receiver's end
    listener.close()


def test_an_answer_cut_short_is_a_failure_tried_again() -> None:
    """A status line cut off (``HTTP/1.1 20``) raised http.client's BadStatusLine, which is no
    OSError: not retried, and a traceback in the log."""
    listener = trickling_server(for_s=0, answer=b"HTTP/1.1 20")
    url = f"http://hooks.invalid:{listener.getsockname()[1]}/hook"
    with pytest.raises(ConnectionError, match="no HTTP answer"):
        post_to_first_answering(["127.0.0.1"], Request(url, data=b"{}", method="POST"))
    listener.close()


def test_a_name_that_does_not_resolve_is_a_failure_tried_again_not_a_refusal() -> None:
    """It was refused for good, as a private address is: no retry, where a DNS error passes."""
    with pytest.raises(OSError, match=r"cannot resolve nohost\.invalid"):
        check_address("http://nohost.invalid/hook", allow_private=False)
