"""``hpo dashboard``: optuna-dashboard on the service's database, behind the tokens, in Chromium.

A headless Chromium (Debian's ``chromium`` and ``chromedriver``, installed by
tests/support/ensure_chromium.sh) opens the study's trials page and waits for its trials; the
screenshot is kept under ``HPO_TEST_ARTIFACTS`` (default: pytest's tmp path), and copied to
``HPO_DOCS_IMAGES`` (e.g. docs/images) when that is set.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from cli.local_stack import LocalStack
from cli.processes import ManagedProcess, free_port, wait_until
from client import HPOClient, Study
from service.storage.database import Database
from service.tokens import DEFAULT_TENANT, Role, TokenStore
from tests.integration.conftest import unique
from tests.support.logs import log_messages

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TOKEN = "dashboard-test-token-0123456789"
N_TRIALS = 4
BROWSER_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
)


@pytest.fixture(scope="module")
def finished(stack: LocalStack) -> Study:
    hpo = HPOClient(stack.url)
    study = hpo.submit(
        {
            "name": unique("dashboard-wine"),
            "space": {
                "lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
                "hidden": {"type": "int", "low": 16, "high": 64, "step": 16},
            },
            "sampler": {"name": "tpe", "seed": 4},
            "budget": {"n_trials": N_TRIALS, "max_concurrent_trials": 2},
            "trainer": {"name": "mlp", "dataset": "wine", "epochs": 3},
        }
    )
    return hpo.wait(study.study_id, timeout=240, poll=0.3)


@pytest.fixture(scope="module")
def dashboard(stack: LocalStack) -> Iterator[str]:
    """``hpo dashboard`` on the stack's database, with one accepted token."""
    port = free_port()
    env = {**stack.env(), "HPO_API_TOKENS": json.dumps([TOKEN]), "HPO_REQUIRE_TOKENS": "true"}
    argv = [sys.executable, "-m", "cli", "dashboard", "--host", "127.0.0.1", "--port", str(port)]
    process = ManagedProcess("dashboard", argv, env, stack.directory / "dashboard.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(url), 60, "the dashboard")
        yield url
    finally:
        process.stop()


def opening_lines(log: Path) -> list[str]:
    """The access lines of the dashboard opened with a token in its URL."""
    return [message for message in log_messages(log) if "GET /dashboard?token=" in message]


def answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/dashboard", timeout=2).status_code == 401
    except requests.RequestException:  # not listening yet, or still loading
        return False


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (*BROWSER_FLAGS, "--window-size=1280,800"):
        options.add_argument(flag)
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def test_without_a_good_token_the_dashboard_answers_401(dashboard: str, finished: Study) -> None:
    page = f"{dashboard}/dashboard/studies/{finished.study_id}"
    assert requests.get(page, timeout=10).status_code == 401
    assert requests.get(f"{page}?token=wrong", timeout=10).status_code == 401
    assert requests.get(f"{dashboard}/api/studies", timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer wrong"}
    assert requests.get(f"{dashboard}/api/studies", headers=wrong, timeout=10).status_code == 401


def test_a_token_opens_it_once_and_writes_are_refused(
    dashboard: str, finished: Study, stack: LocalStack
) -> None:
    session = requests.Session()
    opened = session.get(f"{dashboard}/dashboard?token={TOKEN}", timeout=10, allow_redirects=False)
    assert opened.status_code == 303 and opened.headers["Location"] == "/dashboard"
    log = stack.directory / "dashboard.log"  # its access line keeps the token out
    wait_until(lambda: bool(opening_lines(log)), 10, "the access line")
    assert "/dashboard?token=… " in opening_lines(log)[0] and TOKEN not in log.read_text()
    assert "HttpOnly" in opened.headers["Set-Cookie"]
    studies = session.get(f"{dashboard}/api/studies", timeout=10)
    assert studies.status_code == 200
    assert finished.name in {study["study_name"] for study in studies.json()["study_summaries"]}
    deleted = session.delete(f"{dashboard}/api/studies/{finished.study_id}", timeout=10)
    assert deleted.status_code == 405
    assert session.get(f"{dashboard}/api/studies", timeout=10).status_code == 200


def test_the_browser_shows_the_study_trials(
    dashboard: str, finished: Study, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    browser.get(f"{dashboard}/dashboard/studies/{finished.study_id}/trials?token={TOKEN}")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda driver: all(f"Trial {n}" in page_text(driver) for n in range(N_TRIALS)))
    text = page_text(browser)
    assert finished.name in text
    assert f"{N_TRIALS} Trials" in text  # the list's own count
    assert f"Trial {N_TRIALS}" not in text  # exactly the study's trials
    keep_screenshot(browser, tmp_path)


def page_text(driver: webdriver.Chrome) -> str:
    return str(driver.find_element(By.TAG_NAME, "body").text)


def keep_screenshot(driver: webdriver.Chrome, tmp_path: Path) -> None:
    folder = Path(os.environ.get("HPO_TEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / "dashboard.png"
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    docs = os.environ.get("HPO_DOCS_IMAGES")
    if docs:
        Path(docs).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(docs) / "dashboard.png")


def test_only_the_default_tenant_opens_it(dashboard: str, stack: LocalStack) -> None:
    """It shows every tenant's studies: another tenant's token, or a worker's, is refused (403:
    the token is good, and not of the tenant default)."""
    store = TokenStore(Database(stack.database_url))
    _, acme = store.create(Role.USER, "acme")
    _, worker = store.create(Role.WORKER, None)
    _, operator = store.create(Role.USER, DEFAULT_TENANT)
    for token, status in ((acme, 403), (worker, 403), (operator, 303)):
        opened = requests.get(f"{dashboard}/?token={token}", timeout=10, allow_redirects=False)
        assert opened.status_code == status, token
