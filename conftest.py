"""Loads the repository's shared fixtures (``nats_url``) for every test below this folder, and the
Hypothesis profile."""

import os

from hypothesis import settings

pytest_plugins = ("relisten.testing",)

# The same examples on every run, so CI is repeatable; HYPOTHESIS_PROFILE=explore draws new ones
# (run it when changing the properties or the code under them).
# No per-example deadline: on a loaded 2-core CI machine a slow example is not a failure.
settings.register_profile("repeatable", derandomize=True, print_blob=True, deadline=None)
settings.register_profile("explore", derandomize=False, print_blob=True, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))
