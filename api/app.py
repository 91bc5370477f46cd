"""The Flask application factory."""

from __future__ import annotations

from flask_openapi3 import APIBlueprint, Info, OpenAPI

from api.auth import register_token_check
from api.context import TUNER_EXTENSION
from api.datasets import dataset_reads, datasets
from api.dispatch import CeleryDispatcher
from api.docs import docs
from api.errors import register_error_handlers, validation_error_response
from api.health import health
from api.insights import insights
from api.jobs import jobs, study_jobs
from api.limits import apply_request_limits
from api.metrics import register_metrics
from api.models import best_models, trial_records
from api.openapi_doc import DocumentedOpenAPI
from api.reaper import start_lease_reaper
from api.request_logs import register_log_context
from api.schemas import BEARER_SECURITY
from api.studies import studies
from api.trials import trials
from service.dispatch import TrialDispatcher
from service.json_logs import configure_json_logging
from service.leases import LeaseTimes
from service.settings import Settings
from service.storage.database import Database
from service.tokens import TokenStore
from service.trainer_catalog import TrainerCatalog
from service.tuner import Tuner
from service.webhooks import configure_webhooks

API_VERSION = "0.1.0"


def create_app(
    settings: Settings | None = None, dispatcher: TrialDispatcher | None = None
) -> OpenAPI:
    """Build the API for ``settings`` (default: from ``HPO_`` environment variables)."""
    settings = settings or Settings()
    configure_json_logging(settings.log_level)
    app = DocumentedOpenAPI(
        __name__,
        info=Info(title="HPO service", version=API_VERSION),
        security_schemes=BEARER_SECURITY,
        validation_error_status=422,
        validation_error_callback=validation_error_response,
        doc_prefix="",
        doc_url="/openapi.json",
        doc_ui=True,
    )
    database = Database(settings.database_url)
    lease_times = LeaseTimes(settings.lease_ttl_s, settings.dispatch_timeout_s)
    service = Tuner(
        database, dispatcher or CeleryDispatcher(settings), TrainerCatalog.installed(), lease_times
    )
    app.extensions[TUNER_EXTENSION] = service
    start_lease_reaper(service, settings.reaper_interval_s)
    register_error_handlers(app)
    tokens = TokenStore(
        database,
        frozenset(settings.accepted_tokens()),
        frozenset(settings.accepted_worker_tokens()),
    )
    register_token_check(app, tokens, settings.tokens_required())
    apply_request_limits(app, settings.max_file_bytes)
    register_log_context(app, service)
    register_metrics(app, database, settings)
    proxy = settings.webhook_proxy.get_secret_value() if settings.webhook_proxy else None
    configure_webhooks(settings.webhook_allow_private, proxy)
    app.register_blueprint(docs)
    for blueprint in (studies, trials, health, study_jobs, jobs, datasets, dataset_reads):
        register_keeping_paths(app, blueprint)
    for blueprint in (trial_records, best_models, insights):
        register_keeping_paths(app, blueprint)
    return app


def register_keeping_paths(app: OpenAPI, blueprint: APIBlueprint) -> None:
    """Register ``blueprint``; a path an earlier one documents too keeps the operations of
    both in the OpenAPI document (flask-openapi3 keeps the later blueprint's only: ``DELETE
    /datasets/{reference}`` beside the reads that workers may make)."""
    earlier = {path: app.paths[path] for path in blueprint.paths if path in app.paths}
    app.register_api(blueprint)
    for path, item in earlier.items():
        later = app.paths[path]
        kept = {
            name: getattr(item, name)
            for name in type(item).model_fields
            if getattr(later, name) is None and getattr(item, name) is not None
        }
        app.paths[path] = later.model_copy(update=kept)
