"""The ``hpo`` command against a running service, and the one-command demo."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
import yaml

from cli.errors import PortTaken, StackPartStopped
from cli.local_stack import LocalStack
from cli.processes import free_port, http_ok, wait_until
from client import HPOJSONClient
from tests.integration.conftest import unique

pytestmark = pytest.mark.integration


def hpo(stack: LocalStack, *args: str, timeout_s: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.env()}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


@pytest.mark.slow
def test_submit_a_yaml_study_and_read_status_and_best(stack: LocalStack, tmp_path: Path) -> None:
    study = {
        "name": unique("cli-yaml"),
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True}},
        "budget": {"n_trials": 3, "max_concurrent_trials": 2},
        "trainer": {"name": "mlp", "dataset": "wine", "epochs": 3},
        # Held (preparing) until its checks pass: --wait follows it through to its end.
        "preflight": {"refuse_on_failure": True},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    submitted = hpo(stack, "submit", str(path), "--wait")
    assert submitted.returncode == 0, submitted.stderr + stack.logs()
    head, _, tail = submitted.stdout.partition("}\n{")
    study_id = json.loads(head + "}")["study_id"]
    assert 1e-3 <= json.loads("{" + tail)["params"]["lr"] <= 0.1
    status = json.loads(hpo(stack, "status", str(study_id)).stdout)
    assert (
        status["state"] == "complete"
        and status["counts"]["complete"] + status["counts"]["pruned"] == 3
    )
    best = json.loads(hpo(stack, "best", str(study_id)).stdout)
    assert best["value"] == status["best"]["value"]
    listed = hpo(stack, "list").stdout.splitlines()
    assert listed[0] == "id\tstate\tfinished\tbest\tname"
    assert f"{study_id}\tcomplete\t3/3\t{best['value']}\t{study['name']}" in listed
    assert hpo(stack, "stop", str(study_id)).stdout.strip() == f"study {study_id} is complete"
    assert hpo(stack, "delete", str(study_id)).stdout.strip() == f"study {study_id} deleted"
    gone = hpo(stack, "status", str(study_id))
    assert gone.returncode == 1 and "error 404" in gone.stderr


@pytest.mark.slow
def test_submit_wait_prints_the_pareto_front_of_a_study_of_several_objectives(
    stack: LocalStack, tmp_path: Path
) -> None:
    """It exited 1 (the API's 409 before this stop: such a study has no one best trial)."""
    study = {
        "name": unique("cli-pareto"),
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True}},
        "objectives": [
            {"metric": "validation_loss", "direction": "minimize"},
            {"metric": "n_parameters", "direction": "minimize"},
        ],
        "budget": {"n_trials": 2, "max_concurrent_trials": 2},
        "trainer": {"name": "mlp", "dataset": "wine", "epochs": 2},
        "preflight": {"enabled": False},
    }
    path = tmp_path / "pareto.json"
    path.write_text(json.dumps(study))
    submitted = hpo(stack, "submit", str(path), "--wait")
    assert submitted.returncode == 0, submitted.stderr + stack.logs()
    _, _, tail = submitted.stdout.partition("}\n{")
    front = json.loads("{" + tail)
    assert front["trials"] and all(trial["state"] == "complete" for trial in front["trials"])


def test_submit_reports_a_bad_file_clearly(stack: LocalStack, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps({"name": unique("bad"), "space": {"x": {"type": "float", "low": 1, "high": 0}}})
    )
    result = hpo(stack, "submit", str(path))
    assert result.returncode != 0
    assert "space.x" in result.stdout + result.stderr


def test_submit_wait_gives_up_after_its_timeout(stack: LocalStack, tmp_path: Path) -> None:
    path = tmp_path / "external.json"  # no trainer: only another program would finish its trials
    path.write_text(
        json.dumps(
            {"name": unique("cli-wait"), "space": {"x": {"type": "float", "low": 0, "high": 1}}}
        )
    )
    result = hpo(stack, "submit", str(path), "--wait", "--timeout", "1")
    assert result.returncode == 1, result.stderr
    study_id = json.loads(result.stdout)["study_id"]
    assert f"study {study_id} is still running after 1 s" in result.stderr
    assert f"hpo watch {study_id}" in result.stderr
    assert f"study {study_id} has no trainer: no worker runs its trials" in result.stderr
    assert json.loads(hpo(stack, "status", str(study_id)).stdout)["state"] == "running"


@pytest.mark.slow
def test_the_demo_prints_the_best_hyperparameters_found(tmp_path: Path) -> None:
    """With a shell's own settings beside it: a user's HPO_TOKEN made the demo's API refuse its
    worker, and the demo waited at 0/30 for ever."""
    shell = {**os.environ, "HPO_TOKEN": "a-token-of-another-api", "HPO_WORKER_TOKENS": '["w"]'}
    result = subprocess.run(
        [sys.executable, "-m", "cli", "demo", "--directory", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=400,
        env=shell,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    summary = next(line for line in lines if "complete," in line and "pruned" in line)
    assert int(summary.split()[0]) + int(summary.split()[2]) == 30
    assert any(line.startswith("best validation loss") for line in lines)
    assert any(line.strip().startswith("lr =") for line in lines)


def test_the_demo_refuses_a_folder_of_other_files_and_leaves_them(tmp_path: Path) -> None:
    """It emptied its folder at each start, whatever it held (``--directory .``: the user's)."""
    (tmp_path / "notes.txt").write_text("mine")
    result = subprocess.run(
        [sys.executable, "-m", "cli", "demo", "--directory", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = re.sub(r"[\s│]+", " ", result.stderr)  # Typer's box wraps the message
    assert result.returncode == 2 and "holds files the demo did not make" in said
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_the_stack_says_which_of_its_processes_stopped(tmp_path: Path) -> None:
    stack = LocalStack(f"sqlite:///{tmp_path / 'hpo.db'}", workers=0, directory=tmp_path).start()
    try:
        stack.check_alive()
        assert stack.api is not None
        stack.api.process.kill()
        stack.api.process.wait(timeout=30)
        with pytest.raises(StackPartStopped, match="the stack's serve process has stopped"):
            stack.check_alive()
    finally:
        stack.stop()


@pytest.mark.parametrize(
    "signals",
    [(signal.SIGINT,), (signal.SIGTERM,), (signal.SIGHUP,), (signal.SIGTERM, signal.SIGHUP)],
    ids=["sigint", "sigterm", "sighup", "sigterm-then-sighup"],
)
def test_hpo_local_keeps_its_studies_and_stops_everything_on_a_signal(
    tmp_path: Path, signals: tuple[signal.Signals, ...]
) -> None:
    """SIGTERM or SIGHUP (a closed terminal) left Redis, the API and the workers running; a
    second signal during the stop cut it short, leaving Redis."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    for start in (1, 2):
        local = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli",
                "local",
                "--directory",
                str(tmp_path),
                "--port",
                str(port),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        wait_until(lambda: http_ok(f"{url}/health"), 90, "hpo local's API")
        client = HPOJSONClient(url)
        if start == 1:
            client.create_study(
                {"name": "kept", "space": {"x": {"type": "float", "low": 0, "high": 1}}}
            )
        assert [study["name"] for study in client.studies()] == ["kept"]
        for sig in signals:
            local.send_signal(sig)
            time.sleep(0.2)
        assert local.wait(timeout=60) == 128 + signals[0]
        assert local.stdout is not None and f"up at {url}" in local.stdout.read()
        assert not http_ok(f"{url}/health")
        assert _processes_started_in(tmp_path) == []


def _processes_started_in(directory: Path) -> list[int]:
    """The processes of the stack kept in ``directory``: by their environment (the API's and
    the workers' name its database), their command line or their working folder (Redis')."""
    found = []
    for process in Path("/proc").glob("[0-9]*"):
        try:
            seen = [(process / part).read_bytes() for part in ("environ", "cmdline")]
            seen.append(str((process / "cwd").resolve()).encode())
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if any(str(directory).encode() in part for part in seen):
            found.append(int(process.name))
    return found


def test_the_demo_takes_back_its_own_folder_made_before_its_mark(tmp_path: Path) -> None:
    """A folder an earlier version's demo made (no mark in it) was refused as the user's."""
    from cli.demo import LOCAL_MARK, _made_by_the_demo

    for name in ("hpo.db", "hpo.db-wal", "hpo.db.api-lock"):
        (tmp_path / name).touch()
    (tmp_path / "logs").mkdir()
    (tmp_path / "redis").mkdir()
    assert _made_by_the_demo(tmp_path)
    (tmp_path / LOCAL_MARK).touch()  # the same files, hpo local's: its studies
    assert not _made_by_the_demo(tmp_path)
    (tmp_path / LOCAL_MARK).unlink()
    (tmp_path / "notes.txt").touch()
    assert not _made_by_the_demo(tmp_path)


def test_hpo_local_refuses_the_demo_s_folder_and_a_port_another_server_holds(
    tmp_path: Path,
) -> None:
    """The demo empties its folder at each start; another server's answer on the port was
    taken for the stack's API (its own gunicorn failing to bind)."""
    from cli.demo import DEMO_MARK, run_local

    (tmp_path / DEMO_MARK).touch()
    with pytest.raises(typer.BadParameter, match="is the demo's folder"):
        run_local(tmp_path, 1, free_port())
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        stack = LocalStack(f"sqlite:///{tmp_path / 'hpo.db'}", workers=0, port=port)
        with pytest.raises(PortTaken, match=f"port {port} is taken"):
            stack.start()
        assert not stack.redis.alive()  # nothing was started
