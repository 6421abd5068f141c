"""Settings of the notifier (``RELISTEN_NOTIFIER_<FIELD>``; the old ``RELISTEN_<FIELD>`` names still work,
deprecated): where to announce jobs and how hard to try."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict
from relisten_runtime.settings import CommonSettings

from relisten_notifier.domain import parse_schedule, signing_key


# relisten_runtime has no py.typed: checked on its own, this package sees CommonSettings as Any.
class NotifierSettings(CommonSettings):
    """Notification targets and delivery policy.

    Discord is announced to only when ``RELISTEN_NOTIFIER_DISCORD_WEBHOOK_URL`` is set; a job's own
    ``callback_url`` is always called. An empty environment variable counts as unset.
    """

    service: ClassVar[str | None] = "notifier"
    deprecated_unprefixed: ClassVar[bool] = True

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
    notify_schedule: Annotated[tuple[float, ...], NoDecode] = Field(
        (5.0, 30.0, 120.0, 600.0, 3600.0, 10800.0, 28800.0),
        json_schema_extra={"shown_default": "`5s,30s,2m,10m,1h,3h,8h`"},
        description=(
            "Waits between the attempts of one notice, comma-separated, in seconds or with s/m/h "
            "(5s,30s,2m,10m,1h,3h,8h, the default: 8 attempts over about "
            "12 hours). The event is nacked with the wait and comes back from NATS, so a restart or an "
            "outage of the notifier loses no retry. After the last wait the notice is given up."
        ),
    )
    notify_max_retry_after_s: float = Field(
        3600.0,
        ge=0,
        description="A receiver's Retry-After (429/503) is honoured up to this many seconds.",
    )
    notify_disable_s: float = Field(
        86400.0,
        ge=0,
        description=(
            "A destination that answers 401, 404 or 410 is not called for this long (a KV entry "
            "``disabled.discord`` / ``disabled.callback.<hash>`` in relisten-notify; delete it to "
            "re-enable sooner)."
        ),
    )
    discord_timeout_s: float = Field(10.0, gt=0, description="Timeout of one request to Discord.")
    callback_timeout_s: float = Field(
        15.0, gt=0, description="Timeout of one callback request (Standard Webhooks suggests 15-30 s)."
    )

    @field_validator("notify_schedule", mode="before")
    @classmethod
    def _schedule(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_schedule(value)
        return value

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
