"""With tokens configured, every endpoint but health and the API document needs one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from cli.local_stack import LocalStack

pytestmark = pytest.mark.integration
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    url = f"sqlite:///{tmp_path_factory.mktemp('tokens') / 'hpo.db'}"
    stack = LocalStack(url, workers=0, tokens=[TOKEN]).start()
    yield stack
    stack.stop()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/studies"),
        ("POST", "/studies"),
        ("GET", "/studies/1"),
        ("POST", "/trials/1/report"),
    ],
)
@pytest.mark.parametrize("header", [None, "Bearer wrong", "s3cret-token"])
def test_requests_without_the_token_get_401(
    guarded: LocalStack, method: str, path: str, header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    response = requests.request(method, guarded.url + path, headers=headers, json={}, timeout=10)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("header", "words"),
    [
        ("Basic dXNlcjpwdw==", "the Basic scheme: send 'Authorization: Bearer <token>'"),
        ("s3cret-token", "no scheme: send 'Authorization: Bearer <token>'"),
        ("Bearer wrong", "missing, unknown, revoked or expired bearer token"),
    ],
)
def test_a_401_says_what_is_wrong_with_the_header_without_echoing_it(
    guarded: LocalStack, header: str, words: str
) -> None:
    response = requests.get(f"{guarded.url}/studies", headers={"Authorization": header}, timeout=10)
    [problem] = response.json()["problems"]
    assert problem == {"field": "Authorization", "problem": words}
    assert header.split()[-1] not in response.text


def test_the_token_opens_the_api(guarded: LocalStack) -> None:
    response = requests.get(
        f"{guarded.url}/studies", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/health", "/openapi.json"])
def test_health_and_the_api_document_stay_open(guarded: LocalStack, path: str) -> None:
    assert requests.get(guarded.url + path, timeout=10).status_code == 200
