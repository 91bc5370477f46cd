"""A study's optional webhook: where the service POSTs its events, which ones, and the signing key."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FieldSerializationInfo,
    HttpUrl,
    UrlConstraints,
    field_serializer,
)

WebhookEvent = Literal["best_changed", "study_finished"]
WEBHOOK_EVENTS: tuple[WebhookEvent, ...] = ("best_changed", "study_finished")
# Serialising a spec with this context keeps the secret (the service's own record of the study);
# any other serialisation (every answer of the API) masks it.
STORED_SPEC_CONTEXT = {"hpo_keep_secrets": True}
# As long as the shortest secret taken: an answer's masked spec fits the schema of a study's
# spec (a submission refuses it: service.spec.validation).
MASKED_SECRET = "*" * 16
# Credentials in it and port 0 are refused when a study is submitted (service.spec.validation).
WebhookUrl = Annotated[HttpUrl, UrlConstraints(max_length=2000, allowed_schemes=["http", "https"])]


class WebhookSpec(BaseModel):
    """``url`` (http or https) receives a signed POST for each of ``events``.

    ``secret`` is the client's signing key: each POST carries ``X-HPO-Signature:
    sha256=<HMAC-SHA256(secret, "<X-HPO-Timestamp>." + body)>``. The service never shows it back.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: WebhookUrl
    events: list[WebhookEvent] = Field(
        default_factory=lambda: list(WEBHOOK_EVENTS), min_length=1, max_length=len(WEBHOOK_EVENTS)
    )
    secret: str = Field(
        min_length=16,
        max_length=256,
        description="The key the receiver verifies signatures with (answers show it masked).",
    )

    @field_serializer("secret")
    def _masked(self, secret: str, info: FieldSerializationInfo) -> str:
        context = info.context or {}
        return secret if context.get("hpo_keep_secrets") else MASKED_SECRET
