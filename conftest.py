"""Loads the repository's shared fixtures (``nats_url``) for every test below this folder."""

pytest_plugins = ("relisten.testing",)
