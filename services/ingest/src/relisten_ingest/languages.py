"""Refusing at submission what no configured model can do: a language, or translation.

The asr service stores its capabilities (``AsrCapabilities``: the Whisper language codes its configured
first-pass models transcribe, and whether a multilingual model is there to translate) when it starts.
Ingest reads them, at most every few seconds, and answers 422 ``unsupported_language`` for a job that
names a language none of them knows (an English-only tiny.en knows only ``en``) instead of letting the
pipeline transcribe it as English. Before any asr has started there is nothing to check against: the
job is admitted and the asr refuses it itself (the job fails with the same code).
"""

from __future__ import annotations

import logging
import time
from typing import Final

import msgspec
from relisten_contracts import AsrCapabilities, JobOptions
from relisten_runtime.store import JobStore

log = logging.getLogger(__name__)

REFRESH_S: Final = 5.0
"""How long read capabilities are trusted (an asr restarted with another model is seen this late)."""


def refusal(options: JobOptions, capabilities: AsrCapabilities | None) -> str | None:
    """Why the job cannot be done, or None. Pure."""
    if capabilities is None:
        return None
    if options.task == "translate" and not capabilities.translate:
        return (
            "translation needs a multilingual model and none is configured "
            f"(first pass: {', '.join(capabilities.engines)})"
        )
    if options.language is not None and options.language not in capabilities.languages:
        known = capabilities.languages
        listed = ", ".join(known) if len(known) <= 10 else f"{len(known)} Whisper languages"
        return (
            f"no configured model transcribes {options.language!r} "
            f"({', '.join(capabilities.engines)}: {listed})"
        )
    return None


class LanguageGate:
    """The asr's capabilities, read from the data store and kept for ``REFRESH_S``."""

    def __init__(self) -> None:
        self._capabilities: AsrCapabilities | None = None
        self._read_at = float("-inf")

    async def capabilities(self, store: JobStore) -> AsrCapabilities | None:
        if time.monotonic() - self._read_at < REFRESH_S:
            return self._capabilities
        try:
            self._capabilities = await store.asr_capabilities()
        except msgspec.DecodeError:
            log.warning("stored asr capabilities are unreadable; not checking languages")
            self._capabilities = None
        self._read_at = time.monotonic()
        return self._capabilities

    async def refusal(self, store: JobStore, options: JobOptions) -> str | None:
        """Why the job cannot be done, or None; reads the store only for jobs that could be refused."""
        if options.language is None and options.task == "transcribe":
            return None
        return refusal(options, await self.capabilities(store))
