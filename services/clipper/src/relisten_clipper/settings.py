"""Settings of the clipper (env prefix ``RELISTEN_``); the confidence threshold is per job.

The defaults are what ``make bench`` measured best on the development set (docs/benchmark.md), not
the original design's values (which ``ClipPolicy`` keeps as its own defaults): tight windows -- each cluster of
flagged words plus 1 s of context on each side, no 20-second window around it -- and a budget of a
fifth of the audio, spent on the most doubtful windows first.
"""

from pydantic import Field
from relisten_runtime.settings import CommonSettings


class ClipperSettings(CommonSettings):
    cluster_gap_s: float = Field(1.0, gt=0, description="Flagged words closer than this form one cluster.")
    half_window_s: float = Field(
        0.0,
        ge=0,
        description="Half a window's length around its cluster's centre; 0 keeps just the cluster and its "
        "context padding (the original design: 10).",
    )
    context_pad_s: float = Field(
        1.0, ge=0, description="Audio decoded around flagged words (context; replaced only where flagged)."
    )
    max_window_s: float = Field(30.0, gt=0, description="Longer windows are split at pauses.")
    snap_search_s: float = Field(1.5, ge=0, description="How far a window edge may move to reach a pause.")
    flag_repetition_loops: bool = Field(True, description="Flag segments with a high compression ratio.")
    flag_low_logprob: bool = Field(True, description="Flag segments with a low average log-probability.")
    flag_no_speech: bool = Field(
        False, description="Flag segments the decoder thought were probably silence."
    )
    max_redecode_fraction: float = Field(
        0.2,
        ge=0,
        le=1,
        description="At most this fraction of a job's audio is re-listened to; the most doubtful windows first.",
    )

    def policy_fields(self) -> dict[str, object]:
        return {
            name: getattr(self, name)
            for name in (
                "cluster_gap_s",
                "half_window_s",
                "context_pad_s",
                "max_window_s",
                "snap_search_s",
                "flag_repetition_loops",
                "flag_low_logprob",
                "flag_no_speech",
                "max_redecode_fraction",
            )
        }
