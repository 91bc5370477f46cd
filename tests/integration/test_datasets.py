"""A user's own data set: registered over HTTP, checked on registration, used by a study whose
every trial records the data's hash, its split, its seed and the trainer's version."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
import requests

from cli.local_stack import LocalStack
from client import HPOError
from tests.integration.conftest import unique
from tests.support.datasets import (
    CLASS_NAMES,
    blobs,
    csv_bytes,
    npz_bytes,
    registered_study,
)
from tests.support.studies import wait_for_end
from workers import dataset_cache
from workers.dataset_cache import IN_USE_S, DatasetCache
from workers.provenance import registered_datasets
from workers.trainers.datasets import load_split

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FEATURES, LABELS = blobs()


def upload(stack: LocalStack, content: bytes, **query: str) -> requests.Response:
    return requests.post(
        f"{stack.url}/datasets",
        params=query,
        data=content,
        headers={"Content-Type": "application/octet-stream"},
        timeout=30,
    )


def test_an_npz_registers_with_its_hash_shape_and_classes(stack: LocalStack) -> None:
    content = npz_bytes(X=FEATURES, y=LABELS)
    name = unique("blobs-npz")
    view = stack.client().register_dataset(name, content, "npz")
    assert view["sha256"] == hashlib.sha256(content).hexdigest()
    assert (view["n_rows"], view["n_features"]) == FEATURES.shape
    assert view["classes"] == ["0", "1", "2"]
    assert view["class_counts"] == [60, 60, 60]
    assert stack.client().dataset(view["dataset_id"])["name"] == name
    assert stack.client().dataset_content(name) == content


def test_a_label_column_for_an_npz_file_is_refused_naming_it(stack: LocalStack) -> None:
    name = unique("npz-labelled")
    response = upload(
        stack, npz_bytes(X=FEATURES, y=LABELS), name=name, format="npz", label_column="y"
    )
    assert response.status_code == 422
    assert response.json()["problems"][0]["field"] == "label_column"
    assert "csv files only" in response.json()["problems"][0]["problem"]
    assert name not in [found["name"] for found in stack.client().datasets()]


def test_a_csv_registers_with_its_named_label_column(stack: LocalStack) -> None:
    content = csv_bytes(FEATURES, LABELS)
    view = stack.client().register_dataset(unique("blobs-csv"), content, "csv", "species")
    assert view["classes"] == sorted(CLASS_NAMES)
    assert (view["n_rows"], view["n_features"]) == FEATURES.shape
    assert view["label_column"] == "species"


MALFORMED: list[tuple[str, bytes, dict[str, str], str, str]] = [
    ("no y", npz_bytes(X=FEATURES), {"format": "npz"}, "file", "lacks the array(s) y"),
    (
        "3-D X",
        npz_bytes(X=np.zeros((6, 2, 2)), y=np.arange(6) % 2),
        {"format": "npz"},
        "file",
        "2-D",
    ),
    ("2-D y", npz_bytes(X=FEATURES, y=np.zeros((180, 2))), {"format": "npz"}, "file", "1-D"),
    ("lengths", npz_bytes(X=FEATURES, y=LABELS[:-1]), {"format": "npz"}, "file", "179 labels"),
    (
        "NaN",
        npz_bytes(X=np.where(FEATURES > 3, np.nan, FEATURES), y=LABELS),
        {"format": "npz"},
        "file",
        "NaN",
    ),
    ("one class", npz_bytes(X=FEATURES, y=np.zeros(180)), {"format": "npz"}, "file", "2 classes"),
    (
        "pickled",
        npz_bytes(X=np.array([{"a": 1}] * 6, dtype=object), y=np.arange(6) % 2),
        {"format": "npz"},
        "file",
        "pickles",
    ),
    ("not a zip", b"X,y\n1,2\n", {"format": "npz"}, "file", "not an .npz file"),
    (
        "no label column",
        csv_bytes(FEATURES, LABELS),
        {"format": "csv", "label_column": "kind"},
        "label_column",
        "no column named 'kind'",
    ),
    ("header only", b"a,b,c\n", {"format": "csv", "label_column": "c"}, "file", "data row"),
    (
        "bad number",
        b"a,b,c\n1,x,u\n2,3,v\n",
        {"format": "csv", "label_column": "c"},
        "file",
        "not a number",
    ),
    ("empty", b"", {"format": "csv", "label_column": "c"}, "body", "empty"),
]


@pytest.mark.parametrize(
    ("case", "content", "query", "field", "problem"), MALFORMED, ids=[case[0] for case in MALFORMED]
)
def test_a_malformed_file_is_refused_naming_the_problem(
    stack: LocalStack, case: str, content: bytes, query: dict[str, str], field: str, problem: str
) -> None:
    before = stack.client().datasets()
    answer = upload(stack, content, name=unique("bad"), **query)
    assert answer.status_code == 422, answer.text
    problems = answer.json()["problems"]
    assert problems[0]["field"] == field, problems
    assert problem in problems[0]["problem"], problems
    assert stack.client().datasets() == before


def test_a_file_sent_as_a_form_is_415_saying_to_send_the_file_itself(stack: LocalStack) -> None:
    """``curl -F file=@x.csv`` (multipart): read as the file, its boundary made the header."""
    before = stack.client().datasets()
    answer = requests.post(
        f"{stack.url}/datasets",
        params={"name": unique("form"), "format": "csv", "label_column": "label"},
        files={"file": ("x.csv", b"a,label\n1,0\n")},
        timeout=30,
    )
    assert answer.status_code == 415, answer.text
    [problem] = answer.json()["problems"]
    assert problem["field"] == "Content-Type" and "--data-binary" in problem["problem"]
    assert stack.client().datasets() == before


def test_a_file_labelled_as_curl_data_binary_labels_it_is_read_as_sent(stack: LocalStack) -> None:
    """curl's --data-binary @FILE says application/x-www-form-urlencoded unless told otherwise,
    and sends the file byte for byte: a file, not a form."""
    content = csv_bytes(FEATURES, LABELS)
    answer = requests.post(
        f"{stack.url}/datasets",
        params={"name": unique("curl"), "format": "csv", "label_column": "species"},
        data=content,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["sha256"] == hashlib.sha256(content).hexdigest()


def sent_and_cut(stack: LocalStack, name: str, framing: str, body: bytes) -> tuple[int, Any]:
    """POST a data set's request whose body ends early (the client shuts its side after
    ``body``): the answer's status and its JSON."""
    target = urlsplit(stack.url)
    with socket.create_connection((target.hostname, target.port), timeout=30) as connection:
        head = (
            f"POST /datasets?name={name}&format=csv&label_column=species HTTP/1.1\r\n"
            f"Host: {target.netloc}\r\nContent-Type: application/octet-stream\r\n"
            f"{framing}\r\nConnection: close\r\n\r\n"
        )
        connection.sendall(head.encode() + body)
        connection.shutdown(socket.SHUT_WR)  # gone, as far as the body goes
        answer = b"".join(iter(lambda: connection.recv(65536), b""))
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


def test_an_upload_cut_short_is_400_and_keeps_nothing(stack: LocalStack) -> None:
    """The client went after a part of the file, cut at a line's end (a CSV of its own): the
    server had the part, and stored it as the whole file."""
    content = csv_bytes(FEATURES, LABELS)
    sent = content[: content.index(b"\n", len(content) // 2) + 1]
    name = unique("cut")
    status, answer = sent_and_cut(stack, name, f"Content-Length: {len(content)}", sent)
    assert status == 400, answer
    [problem] = answer["problems"]
    assert problem["field"] == "body"
    assert f"after {len(sent)} of the {len(content)} bytes" in problem["problem"]
    assert name not in {listed["name"] for listed in stack.client().datasets()}


def test_a_chunked_upload_cut_short_is_400_and_keeps_nothing(stack: LocalStack) -> None:
    """gunicorn raised NoMoreData from the body's read: a 500."""
    content = csv_bytes(FEATURES, LABELS)
    chunk = f"{len(content):x}\r\n".encode() + content[: len(content) // 2]
    name = unique("cut-chunked")
    status, answer = sent_and_cut(stack, name, "Transfer-Encoding: chunked", chunk)
    assert status == 400, answer
    [problem] = answer["problems"]
    assert problem["field"] == "body" and "could not be read whole" in problem["problem"], problem
    assert name not in {listed["name"] for listed in stack.client().datasets()}


@pytest.mark.parametrize(
    "name",
    [
        "iris\n",  # a trailing line break: the pattern's $ matched before it (201 "iris\n")
        "../iris",
        "-iris",
        "ünïcødé",
        "12",  # digits only: an id
    ],
)
def test_a_data_set_name_outside_the_rule_is_422_naming_it(stack: LocalStack, name: str) -> None:
    answer = upload(stack, csv_bytes(FEATURES, LABELS), name=name, format="csv")
    assert answer.status_code == 422, answer.text
    [problem] = answer.json()["problems"]
    assert problem["field"] == "name" and "ASCII letters and digits" in problem["problem"]
    assert name not in {listed["name"] for listed in stack.client().datasets()}


# A superscript, a circled digit, a full-width one: str.isdigit() says yes to each.
@pytest.mark.parametrize("reference", ["²", "①", "⁵/content", "\uff11"])
def test_a_reference_of_digits_int_cannot_read_is_an_unknown_name(
    stack: LocalStack, reference: str
) -> None:
    answer = requests.get(f"{stack.url}/datasets/{reference}", timeout=30)
    assert answer.status_code == 404, answer.text
    assert answer.json()["problems"][0]["field"] == "reference"


def test_a_study_naming_an_unknown_dataset_is_refused_on_trainer_dataset(stack: LocalStack) -> None:
    spec = registered_study(unique("unknown-data"), "registered:no-such-set", 1, 1)
    with pytest.raises(HPOError) as refused:
        stack.client().create_study(spec)
    assert refused.value.status == 422
    assert refused.value.body["problems"][0]["field"] == "trainer.dataset"
    assert "no-such-set" in refused.value.body["problems"][0]["problem"]


def test_a_study_whose_split_of_the_data_cannot_be_made_is_refused_naming_the_fraction(
    stack: LocalStack,
) -> None:
    """Ten classes of five rows: a test part of 5% holds 3 rows, and no stratified split gives
    each class one of them; every trial would fail on it."""
    ten_classes = np.repeat(np.arange(10), 5)
    features = np.random.default_rng(0).normal(size=(50, 3))
    dataset = stack.client().register_dataset(
        unique("ten-classes"), npz_bytes(X=features, y=ten_classes), "npz"
    )
    spec = registered_study(unique("thin-split"), dataset["reference"], 1, 1)
    spec["trainer"] |= {"validation_fraction": 0.05, "test_fraction": 0.05}
    with pytest.raises(HPOError) as refused:
        stack.client().create_study(spec)
    assert refused.value.status == 422
    [problem] = refused.value.body["problems"]
    assert problem["field"] == "trainer.test_fraction"
    assert "3 of the data set's 50 rows, fewer than its 10 classes" in problem["problem"]
    names = [study["name"] for study in stack.client().studies()]
    assert spec["name"] not in names


@pytest.fixture(scope="module")
def finished(stack: LocalStack) -> dict[str, Any]:
    client = stack.client()
    dataset = client.register_dataset(
        unique("study-csv"), csv_bytes(FEATURES, LABELS), "csv", "species"
    )
    created = client.create_study(registered_study(unique("on-csv"), dataset["reference"], 4, 3))
    study = wait_for_end(client, created["study_id"])
    return {"dataset": dataset, "study": study, "trials": client.trials(created["study_id"])}


def test_a_study_on_a_registered_dataset_runs_to_the_end(finished: dict[str, Any]) -> None:
    assert finished["study"]["state"] == "complete"
    assert [t["state"] for t in finished["trials"]] == ["complete"] * 4, [
        t["fail_reason"] for t in finished["trials"]
    ]


def test_every_trial_records_the_data_hash_split_seed_and_trainer_version(
    finished: dict[str, Any],
) -> None:
    dataset = finished["dataset"]
    splits = set()
    for trial in finished["trials"]:
        provenance = trial["provenance"]
        assert provenance["data_sha256"] == dataset["sha256"]
        assert provenance["dataset"] == dataset["reference"]
        assert provenance["seed"] == trial["seed"]
        assert provenance["trainer"] == "mlp"
        assert provenance["trainer_package"] == "hpo-service"
        assert provenance["trainer_version"] == version("hpo-service")
        assert provenance["split_seed"] == 5
        assert sum(provenance["split_sizes"].values()) == dataset["n_rows"]
        splits.add((provenance["split_sha256"], tuple(provenance["split_sizes"].values())))
    assert len(splits) == 1, "the split is fixed per study"


def test_a_worker_s_cache_keeps_to_its_limit_removing_the_files_used_longest_ago(
    stack: LocalStack, tmp_path: Path
) -> None:
    client = stack.client()
    a, b, c, d = (
        client.register_dataset(unique("cached"), csv_bytes(*blobs(seed=seed)), "csv", "species")
        for seed in (3, 4, 5, 6)
    )
    cache = DatasetCache(client, tmp_path, limit_bytes=b["size_bytes"] + c["size_bytes"])

    def fetched(view: dict[str, Any]) -> Path:
        return Path(cache.fetch(view["name"])[3])

    def used_ago(path: Path, seconds: float) -> None:
        moment = time.time() - seconds
        os.utime(path, (moment, moment))

    path_a, path_b = fetched(a), fetched(b)
    used_ago(path_a, IN_USE_S + 30)
    used_ago(path_b, IN_USE_S + 60)
    assert fetched(b) == path_b  # used again: now a was used longest ago
    path_c = fetched(c)  # over the limit: a, used longest ago, goes
    assert not path_a.exists()
    assert path_b.exists() and path_c.exists()
    path_d = fetched(d)  # over the limit again, but b and c were used a moment ago
    assert path_b.exists() and path_c.exists() and path_d.exists()
    assert hashlib.sha256(path_d.read_bytes()).hexdigest() == d["sha256"]


def test_a_download_left_unfinished_goes_at_the_next_download_once_old(
    stack: LocalStack, tmp_path: Path
) -> None:
    client = stack.client()
    view = client.register_dataset(unique("tidy"), csv_bytes(*blobs(seed=12)), "csv", "species")
    left, writing, kept = (tmp_path / name for name in (".partial-left", ".partial-now", "k.csv"))
    for path in (left, writing, kept):
        path.write_bytes(b"x" * 100)
    for path in (left, kept):  # a killed process's, and a file kept, both used long ago
        moment = time.time() - IN_USE_S - 30
        os.utime(path, (moment, moment))
    DatasetCache(client, tmp_path).fetch(view["name"])  # far under its limit
    assert not left.exists()
    assert writing.exists() and kept.exists()  # one being written; one the limit keeps


def test_a_download_that_fails_while_written_leaves_no_file(
    stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = stack.client()
    view = client.register_dataset(unique("full"), csv_bytes(*blobs(seed=13)), "csv", "species")

    def disk_full(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dataset_cache.os, "replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        DatasetCache(client, tmp_path).fetch(view["name"])
    assert list(tmp_path.iterdir()) == []


def test_a_file_removed_between_its_fetch_and_its_read_is_fetched_again(
    stack: LocalStack, tmp_path: Path
) -> None:
    client = stack.client()
    view = client.register_dataset(unique("lost"), csv_bytes(*blobs(seed=7)), "csv", "species")
    cache = DatasetCache(client, tmp_path)
    removed: list[str] = []

    def fetch_then_lose_it(reference: str) -> tuple[str, str, str | None, str]:
        found = cache.fetch(reference)
        if not removed:  # as another process of the node making room would, just after
            Path(found[3]).unlink()
            removed.append(found[3])
        return found

    with registered_datasets(fetch_then_lose_it):
        split = load_split(view["reference"], seed=11)
    assert removed
    assert split.content_sha256 == view["sha256"]
    assert Path(removed[0]).exists()  # downloaded again


def test_a_data_set_is_deleted_and_its_name_is_free_again(stack: LocalStack) -> None:
    client = stack.client()
    name = unique("gone")
    view = client.register_dataset(name, csv_bytes(*blobs(seed=8)), "csv", "species")
    client.delete_dataset(name)
    with pytest.raises(HPOError) as missing:
        client.dataset(view["dataset_id"])
    assert missing.value.status == 404
    assert name not in [found["name"] for found in client.datasets()]
    again = client.register_dataset(name, csv_bytes(*blobs(seed=9)), "csv", "species")
    assert again["dataset_id"] != view["dataset_id"]


@pytest.mark.parametrize("by", ["name", "id"])
def test_a_data_set_a_study_names_is_not_deleted_until_the_study_is(
    stack: LocalStack, by: str
) -> None:
    client = stack.client()
    view = client.register_dataset(unique("used"), csv_bytes(*blobs(seed=10)), "csv", "species")
    reference = f"registered:{view['name'] if by == 'name' else view['dataset_id']}"
    study = client.create_study(registered_study(unique("user"), reference, 1, 1))
    with pytest.raises(HPOError) as refused:
        client.delete_dataset(view["dataset_id"])
    assert refused.value.status == 409
    assert refused.value.body["problems"][0]["field"] == "reference"
    assert str(study["study_id"]) in refused.value.body["problems"][0]["problem"]
    assert client.dataset(view["dataset_id"]) == view  # nothing changed
    client.delete(study["study_id"])
    client.delete_dataset(view["name"])
    with pytest.raises(HPOError) as missing:
        client.dataset(view["dataset_id"])
    assert missing.value.status == 404
