"""Settings of the notifier (env prefix ``RELISTEN_``): where to announce jobs and how hard to try."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict
from relisten_runtime.settings import CommonSettings

from relisten_notifier.domain import signing_key


# relisten_runtime has no py.typed: checked on its own, this package sees CommonSettings as Any.
class NotifierSettings(CommonSettings):
    """Notification targets and delivery policy.

    Discord is announced to only when ``RELISTEN_DISCORD_WEBHOOK_URL`` is set; a job's own
    ``callback_url`` is always called. An empty environment variable counts as unset.
    """

    # A refused value is not echoed in the error: it may be the signing secret or a webhook token.
    model_config = SettingsConfigDict(hide_input_in_errors=True)

    discord_webhook_url: SecretStr | None = Field(
        None,
        description=(
            "Discord webhook URL (query parameters such as thread_id are kept); unset: no Discord. "
            "Secret because the URL carries the webhook's token."
        ),
    )
    discord_username: str = Field(
        "relisten", description="Name the Discord message is posted under (at most 80 characters)."
    )
    webhook_secret: SecretStr | None = Field(
        None,
        description=(
            "Standard Webhooks signing secret for job callbacks: 'whsec_' + base64 (the spec's form), "
            "or any other string, whose UTF-8 bytes are then the key. Unset: callbacks go unsigned."
        ),
    )
    public_url: str = Field(
        "http://127.0.0.1:8000",
        description="Base URL of the ingest API as clients reach it; transcript links are built from it.",
    )
    discord_max_attempts: int = Field(
        5, ge=1, description="Attempts of one Discord post, the first included."
    )
    callback_max_attempts: int = Field(
        5, ge=1, description="Attempts of one job callback, the first included."
    )
    notify_backoff_s: float = Field(1.0, ge=0, description="Wait before the second attempt; doubles after.")
    notify_backoff_max_s: float = Field(30.0, ge=0, description="Longest wait between two attempts.")
    notify_jitter: float = Field(
        0.2, ge=0, le=1, description="Up to this fraction of each backoff wait is randomly taken off."
    )
    notify_max_retry_after_s: float = Field(
        300.0,
        ge=0,
        description="A 429/503 asking to wait longer than this ends the delivery (it is logged as given up).",
    )
    discord_timeout_s: float = Field(10.0, gt=0, description="Timeout of one request to Discord.")
    callback_timeout_s: float = Field(
        15.0, gt=0, description="Timeout of one callback request (Standard Webhooks suggests 15-30 s)."
    )

    @field_validator("discord_webhook_url", "webhook_secret", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _secret_decodes(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            signing_key(value.get_secret_value())
        return value
