"""Settings of the clipper (``RELISTEN_CLIPPER_<FIELD>``; the old ``RELISTEN_<FIELD>`` names still work,
deprecated); the confidence threshold is per job.

Every default is :class:`~relisten_clipper.domain.ClipPolicy`'s own, the values ``make bench`` measured
best on the development set (docs/benchmark.md): tight windows -- each cluster of flagged words plus 1 s
of context on each side, no 20-second window around it -- and a budget of a fifth of the audio, spent on
the most doubtful windows first. One source of truth: change a default in the policy.
"""

from typing import ClassVar

from pydantic import Field
from relisten_runtime.settings import CommonSettings

from relisten_clipper.domain import ClipPolicy

SHIPPED = ClipPolicy()


class ClipperSettings(CommonSettings):
    service: ClassVar[str | None] = "clipper"
    deprecated_unprefixed: ClassVar[bool] = True

    cluster_gap_s: float = Field(
        SHIPPED.cluster_gap_s, gt=0, description="Flagged words closer than this form one cluster."
    )
    half_window_s: float = Field(
        SHIPPED.half_window_s,
        ge=0,
        description="Half a window's length around its cluster's centre; 0 keeps just the cluster and its "
        "context padding (the original design: 10, with RELISTEN_CLIPPER_CLUSTER_GAP_S=5).",
    )
    context_pad_s: float = Field(
        SHIPPED.context_pad_s,
        ge=0,
        description="Audio decoded around flagged words (context; replaced only where flagged).",
    )
    max_window_s: float = Field(SHIPPED.max_window_s, gt=0, description="Longer windows are split at pauses.")
    flag_repetition_loops: bool = Field(
        SHIPPED.flag_repetition_loops, description="Flag segments with a high compression ratio."
    )
    flag_low_logprob: bool = Field(
        SHIPPED.flag_low_logprob, description="Flag segments with a low average log-probability."
    )
    flag_no_speech: bool = Field(
        SHIPPED.flag_no_speech, description="Flag segments the decoder thought were probably silence."
    )
    max_redecode_fraction: float = Field(
        SHIPPED.max_redecode_fraction,
        ge=0,
        le=1,
        description="At most this fraction of a job's audio is re-listened to; the most doubtful windows first.",
    )
    escalate_flag_rate: float = Field(
        SHIPPED.escalate_flag_rate,
        ge=0,
        le=1,
        description="A first-pass segment (a voice-activity chunk of up to 30 s of speech) in which at least "
        "this share of the words is flagged is re-heard whole (its own chunk, Whisper's full 30 s input) and the "
        "second pass's words replace all of it (outside the budget); 0 turns it off. Off: on validation not a "
        "win beyond noise; 0.2 helps on degraded audio (docs/yardstick.md).",
    )

    def policy_fields(self) -> dict[str, object]:
        return {
            name: getattr(self, name)
            for name in (
                "cluster_gap_s",
                "half_window_s",
                "context_pad_s",
                "max_window_s",
                "flag_repetition_loops",
                "flag_low_logprob",
                "flag_no_speech",
                "max_redecode_fraction",
                "escalate_flag_rate",
            )
        }
