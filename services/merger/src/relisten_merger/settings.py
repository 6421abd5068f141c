"""Settings of the merger (``RELISTEN_MERGER_<FIELD>``; the old ``RELISTEN_<FIELD>`` names still work,
deprecated); every default is :class:`MergePolicy`'s own."""

from typing import ClassVar

from pydantic import Field
from relisten_runtime.settings import CommonSettings

from relisten_merger.domain import MergePolicy

SHIPPED = MergePolicy()


class MergerSettings(CommonSettings):
    service: ClassVar[str | None] = "merger"
    deprecated_unprefixed: ClassVar[bool] = True

    max_drift: float = Field(
        SHIPPED.max_drift,
        ge=0,
        le=1,
        description="Reject a clip whose words differ from the first pass by more than this.",
    )
    max_whole_drift: float = Field(
        SHIPPED.max_whole_drift,
        ge=0,
        le=1,
        description="RELISTEN_MERGER_MAX_DRIFT for a stretch re-heard whole (RELISTEN_CLIPPER_ESCALATE_FLAG_RATE): "
        "the first pass doubted all of it and two readings are expected; 0.8 still rejects an answer that "
        "shares almost nothing with the first pass, 1 keeps no drift guard there.",
    )
    whole_more_confident: bool = Field(
        SHIPPED.whole_more_confident,
        description="Take a stretch re-heard whole only when the second pass is on average at least as sure "
        "of its words as the first pass was of its own.",
    )
    require_more_confident: bool = Field(
        SHIPPED.require_more_confident,
        description="Replace a flagged stretch only where the second pass is more confident.",
    )
    min_confidence_gain: float = Field(
        SHIPPED.min_confidence_gain,
        ge=0,
        le=1,
        description="How much more confident the second pass must be to replace a stretch.",
    )
    min_second_probability: float = Field(
        SHIPPED.min_second_probability,
        ge=0,
        le=1,
        description="A flagged stretch is replaced only where the second pass's own mean probability over it "
        "reaches this (a stronger model that is itself unsure is not evidence enough).",
    )

    suspect_probability: float = Field(
        SHIPPED.suspect_probability,
        ge=0,
        le=1,
        description="First-pass words at or below this probability are suspected of being invented; when "
        "the second pass hears nothing in a window of only such words, or only words it is itself unsure of "
        "(below RELISTEN_MERGER_MIN_SECOND_PROBABILITY: over noise Whisper base answers a stock 'So.'), "
        "they are removed and its words are not taken.",
    )

    accept_model: bool = Field(
        False,
        description="Decide which flagged stretches take the second pass's words with the fitted per-region "
        "accept model (relisten_merger/accept_model.json) instead of the confidence gate; the drift guard "
        "stays in force. Off: on validation it was not a win beyond noise (docs/yardstick.md).",
    )

    def policy_fields(self) -> dict[str, object]:
        from relisten_merger.accept import default_accept_model

        fields: dict[str, object] = {"accept_model": default_accept_model() if self.accept_model else None}
        return fields | {
            name: getattr(self, name)
            for name in (
                "max_drift",
                "max_whole_drift",
                "whole_more_confident",
                "require_more_confident",
                "min_confidence_gain",
                "min_second_probability",
                "suspect_probability",
            )
        }
