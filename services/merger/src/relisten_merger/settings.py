"""Settings of the merger (env prefix ``RELISTEN_``)."""

from pydantic import Field
from relisten_runtime.settings import CommonSettings


class MergerSettings(CommonSettings):
    max_drift: float = Field(
        0.5, ge=0, le=1, description="Reject a clip whose words differ from the first pass by more than this."
    )
    require_more_confident: bool = Field(
        True, description="Replace a flagged stretch only where the second pass is more confident."
    )
