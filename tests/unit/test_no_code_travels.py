"""Nothing a client sends is executed: trainers are named entry points, messages are JSON."""

from __future__ import annotations

import pytest

from service.queue_contract import celery_config, soft_time_limit_s
from service.settings import Settings
from workers.trainer_loader import UnknownTrainer, load_trainer
from workers.trainers.mlp import MLPTrainer


def test_an_installed_trainer_is_found_by_name() -> None:
    assert isinstance(load_trainer("mlp"), MLPTrainer)


@pytest.mark.parametrize(
    "name", ["os:system", "workers.trainers.mlp:MLPTrainer", "builtins.eval", "../mlp"]
)
def test_a_module_path_or_anything_not_installed_is_refused(name: str) -> None:
    with pytest.raises(UnknownTrainer):
        load_trainer(name)


def test_the_queue_carries_json_and_nothing_else() -> None:
    config = celery_config(Settings())
    assert config["accept_content"] == ["json"]
    assert config["task_serializer"] == "json"


def test_settings_refuse_a_visibility_timeout_within_the_time_limit() -> None:
    with pytest.raises(ValueError, match="must exceed"):
        Settings(task_time_limit_s=3600, broker_visibility_timeout_s=3000)
    assert Settings(task_time_limit_s=7200).broker_visibility_timeout_s > 7200


def test_a_trial_is_stopped_by_the_soft_time_limit_before_the_hard_one_kills_it() -> None:
    config = celery_config(Settings(task_time_limit_s=6 * 3600))
    assert config["task_soft_time_limit"] == 6 * 3600 - 300  # five minutes to report it
    assert [soft_time_limit_s(limit) for limit in (600, 20, 6, 5)] == [540, 15, 1, None]
