"""The name a study has in Optuna's tables, apart from the name its tenant gave it.

Study names are unique per tenant, but Optuna's ``studies.study_name`` is unique across the
database, so each study gets an Optuna name of its own, kept on the service's record
(``hpo_studies.optuna_name``) and used wherever the service loads the Optuna study. The user's
name stays the study's name in every view and answer, and in everything derived from it (seeds,
Hyperband brackets), so a study behaves the same whatever its tenant.

The rule: the tenant ``default`` keeps the plain name (what optuna-dashboard and readers of the
database saw before); another tenant's study is ``<tenant>/<name>``. A study name
(``StudyName``) holds no ``/`` (nor does a tenant's, ``service.tokens.TENANT_NAME``), so the part
after the last ``/`` is the name, the part before it the tenant, and a plain name is the default
tenant's: no two (tenant, name) pairs share an Optuna name. At most 64 + 1 + 128 characters,
within Optuna's 512.

Studies made before names were per tenant kept their plain Optuna name, whatever their tenant;
where such a study holds a name the tenant ``default`` asks for, the new study is
``default/<name>`` (:func:`fallback_optuna_name`): no other tenant can make that name.
"""

from __future__ import annotations

from service.errors import Conflict
from service.tokens import DEFAULT_TENANT


def optuna_study_name(tenant: str, name: str) -> str:
    """The Optuna name of ``tenant``'s study ``name``: plain for ``default``, else ``tenant/name``."""
    return name if tenant == DEFAULT_TENANT else f"{tenant}/{name}"


def fallback_optuna_name(tenant: str, name: str) -> str | None:
    """The Optuna name to try where :func:`optuna_study_name` is held by a study of another
    tenant from before names were per tenant (only the default tenant's plain names can be);
    ``None`` where there is none to try."""
    return f"{DEFAULT_TENANT}/{name}" if tenant == DEFAULT_TENANT else None


def name_taken(name: str) -> Conflict:
    """The answer to a tenant's second study of ``name``."""
    return Conflict(f"a study named '{name}' already exists", field="name")
