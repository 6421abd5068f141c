"""The bundled second-pass model; the code is shared with the asr service in :mod:`relisten_runtime.models`."""

from relisten_runtime.models import (
    BUNDLED_BASE,
    BUNDLED_PREFIX,
    SIDE_FILES,
    BundledModelError,
    bundled_base_dir,
    display_name,
    resolve_model,
)

__all__ = [
    "BUNDLED_BASE",
    "BUNDLED_PREFIX",
    "SIDE_FILES",
    "BundledModelError",
    "bundled_base_dir",
    "display_name",
    "resolve_model",
]
