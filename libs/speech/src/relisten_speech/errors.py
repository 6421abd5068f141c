"""The one error of a speech engine: a model that cannot load, audio it cannot take, a server that
cannot answer."""

from __future__ import annotations


class SpeechError(Exception):
    """A speech model or server could not answer; ``code`` is short and stable (``model_unavailable``,
    ``bad_audio``, ``timeout``, ``http_503``, ``bad_response``, ...), ``retryable`` says whether asking
    again could help."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
