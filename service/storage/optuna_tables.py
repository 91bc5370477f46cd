"""Optuna's RDB tables, as its own models define them: what the service reads and writes of
Optuna's schema directly goes through these, so the column types convert states, value kinds and
times exactly as Optuna's storage does."""

from __future__ import annotations

from optuna.storages._rdb import models

STUDIES = models.StudyModel.__table__
TRIALS = models.TrialModel.__table__
PARAMS = models.TrialParamModel.__table__
VALUES = models.TrialValueModel.__table__
USER_ATTRS = models.TrialUserAttributeModel.__table__
SYSTEM_ATTRS = models.TrialSystemAttributeModel.__table__
INTERMEDIATE = models.TrialIntermediateValueModel.__table__
