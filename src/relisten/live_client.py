"""``relisten live``: stream a recording (or the microphone) to relisten's realtime WebSocket,
``GET /v1/realtime?intent=transcription``, and follow the transcript as it is spoken and refined.

The client speaks OpenAI's realtime transcription protocol, so it works against relisten or any other
server that does: a ``session.update`` with a transcription session (pcm16 at 24 kHz, server VAD),
then ``input_audio_buffer.append`` chunks at real-time pace (or ``speed`` times faster). The server
answers with ``input_audio_buffer.speech_started``/``.speech_stopped``/``.committed`` per turn,
``conversation.item.input_audio_transcription.delta`` while the first pass hears words,
``.completed`` with the turn's refined text, and relisten's own ``relisten.turn.refined`` (words,
probabilities, corrections) and ``relisten.session.degraded`` events.

The parts: :func:`decode_pcm24` (any audio file to pcm16 mono 24 kHz), :class:`LiveSession` (a pure
fold of the server's events into turns, also used by ``relisten.bench_live``), :func:`stream_session`
(the WebSocket I/O and pacing) and :func:`run` (the command: prints the transcript with rich).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import av
import numpy as np

REALTIME_RATE = 24000
"""Sample rate of the audio sent (the protocol's pcm16 is 24 kHz)."""
CHUNK_S = 0.1
"""Audio per ``input_audio_buffer.append``: small enough for a responsive VAD, large enough that a
chunk is not mostly JSON and base64 overhead."""
TRAILING_SILENCE_S = 1.0
"""Silence sent after the recording, so that server VAD hears the last turn end as it would live."""
REFINED_GRACE_S = 3.0
"""How long to wait for a completed turn's ``relisten.turn.refined`` (sent right after
``.completed`` by relisten; other servers never send it)."""

DELTA = "conversation.item.input_audio_transcription.delta"
COMPLETED = "conversation.item.input_audio_transcription.completed"
FAILED = "conversation.item.input_audio_transcription.failed"
REFINED = "relisten.turn.refined"
BENIGN_ERROR_CODES = frozenset({"input_audio_buffer_commit_empty"})
"""Error codes that only say the final commit found nothing left to commit."""


class LiveError(RuntimeError):
    """The session could not start or ended badly; ``exit_code`` is what the command returns."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --- audio ---------------------------------------------------------------------------------------


def decode_pcm24(path: Path) -> bytes:
    """Any audio file PyAV can decode to pcm16 little-endian mono at 24 kHz. Raises
    :class:`LiveError` (exit code 2) when the file cannot be read or holds no audio."""
    chunks: list[bytes] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise LiveError(f"{path}: no audio stream", 2)
            resampler = av.AudioResampler(format="s16", layout="mono", rate=REALTIME_RATE)
            for frame in container.decode(audio=0):
                chunks.extend(out.to_ndarray().tobytes() for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray().tobytes() for out in resampler.resample(None))
    except (av.error.FFmpegError, OSError) as exc:
        raise LiveError(f"{path}: cannot decode: {exc}", 2) from exc
    return b"".join(chunks)


def float_to_pcm24(audio: np.ndarray, rate: int) -> bytes:
    """Float samples in [-1, 1] at ``rate`` to pcm16 at 24 kHz (linear interpolation is enough for
    speech at the rates used here: 16 kHz fixtures, 48/44.1 kHz microphones)."""
    if rate != REALTIME_RATE and len(audio):
        positions = np.arange(0, len(audio) * REALTIME_RATE / rate) * rate / REALTIME_RATE
        audio = np.interp(positions, np.arange(len(audio)), audio)
    return bytes((np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes())


def pcm_chunks(pcm: bytes, chunk_s: float = CHUNK_S) -> list[bytes]:
    """``pcm`` cut into chunks of ``chunk_s`` seconds (the last may be shorter)."""
    size = int(REALTIME_RATE * chunk_s) * 2
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


def pcm_seconds(pcm: bytes) -> float:
    return len(pcm) / 2 / REALTIME_RATE


# --- protocol ------------------------------------------------------------------------------------


def realtime_url(server: str, extra: dict[str, str] | None = None) -> str:
    """The realtime endpoint of the relisten at ``server`` (http(s) or ws(s) URL; a URL that already
    names a path other than ``/`` is used as it is, with ``intent=transcription`` added)."""
    parts = urlsplit(server if "://" in server else f"http://{server}")
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise LiveError(f"{server}: not an http(s) or ws(s) URL", 2)
    path = parts.path if parts.path not in ("", "/") else "/v1/realtime"
    query = dict(item.split("=", 1) for item in parts.query.split("&") if "=" in item)
    query.setdefault("intent", "transcription")
    query.update(extra or {})
    return urlunsplit((scheme, parts.netloc, path, urlencode(query), ""))


def session_update(
    *, language: str | None = None, prompt: str | None = None, logprobs: bool = True
) -> dict[str, Any]:
    """The ``session.update`` of a transcription session: pcm16 24 kHz in, server VAD turns."""
    transcription: dict[str, Any] = {}
    if language:
        transcription["language"] = language
    if prompt:
        transcription["prompt"] = prompt
    session: dict[str, Any] = {
        "type": "transcription",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": REALTIME_RATE},
                "transcription": transcription,
                "turn_detection": {"type": "server_vad"},
            }
        },
    }
    if logprobs:
        session["include"] = ["item.input_audio_transcription.logprobs"]
    return {"type": "session.update", "session": session}


def append_event(chunk: bytes) -> str:
    return json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(chunk).decode()})


# --- the session as a fold of events -------------------------------------------------------------


@dataclass
class Correction:
    before: str
    after: str
    status: str
    """accepted, rejected or unresolved."""
    start: float | None = None
    end: float | None = None

    @classmethod
    def from_event(cls, item: dict[str, Any]) -> Correction:
        # relisten's own names first, then the transcript's (original_text/corrected_text).
        before = item.get("before", item.get("original_text", ""))
        after = item.get("after", item.get("corrected_text", ""))
        status = item.get("status")
        if status is None and "accepted" in item:
            status = "accepted" if item["accepted"] else "rejected"
        return cls(
            str(before).strip(),
            str(after).strip(),
            str(status or "accepted"),
            _float_or_none(item.get("start")),
            _float_or_none(item.get("end")),
        )


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


@dataclass
class Turn:
    """One turn (one conversation item) as the client has heard of it so far."""

    item_id: str
    deltas: list[str] = field(default_factory=list)
    completed: str | None = None
    failed: dict[str, Any] | None = None
    refined: dict[str, Any] | None = None
    words: list[dict[str, Any]] = field(default_factory=list)
    corrections: list[Correction] = field(default_factory=list)
    audio_start_ms: int | None = None
    audio_end_ms: int | None = None
    committed: bool = False
    # Arrival times (time.monotonic) for the benchmark.
    first_delta_at: float | None = None
    completed_at: float | None = None
    speech_stopped_at: float | None = None

    @property
    def delta_text(self) -> str:
        return "".join(self.deltas).strip()

    @property
    def text(self) -> str:
        """The best text known: the completed (refined) transcript, else the deltas so far."""
        return (self.completed if self.completed is not None else "".join(self.deltas)).strip()

    @property
    def settled(self) -> bool:
        return self.completed is not None or self.failed is not None


@dataclass
class LiveSession:
    """Everything the server said in one session, folded into turns (pure: no I/O, no clock but the
    ``now`` passed in)."""

    turns: dict[str, Turn] = field(default_factory=dict)
    job_id: str | None = None
    session: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    degraded: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    """Every event with its arrival time, in order."""
    audio_ended: bool = False
    """The client sent its last audio and the final commit."""
    commit_refused: bool = False
    """The server answered the final commit with ``input_audio_buffer_commit_empty``."""

    def turn(self, item_id: str) -> Turn:
        if item_id not in self.turns:
            self.turns[item_id] = Turn(item_id)
        return self.turns[item_id]

    def apply(self, event: dict[str, Any], now: float = 0.0) -> Turn | None:
        """Fold one server event in; the turn it changed, if any."""
        self.events.append((now, event))
        kind = str(event.get("type", ""))
        self._note_job_id(event)
        item_id = event.get("item_id")
        if kind in ("session.created", "session.updated"):
            self.session = dict(event.get("session") or {})
            return None
        if kind == "error":
            error = dict(event.get("error") or {})
            self.errors.append(error)
            if self.audio_ended and error.get("code") == "input_audio_buffer_commit_empty":
                self.commit_refused = True
            return None
        if kind == "relisten.session.degraded":
            self.degraded.append(event)
            return None
        if not isinstance(item_id, str):
            return None
        turn = self.turn(item_id)
        if kind == "input_audio_buffer.speech_started":
            turn.audio_start_ms = int(event.get("audio_start_ms", 0))
        elif kind == "input_audio_buffer.speech_stopped":
            turn.audio_end_ms = int(event.get("audio_end_ms", 0))
            turn.speech_stopped_at = now
        elif kind == "input_audio_buffer.committed":
            turn.committed = True
        elif kind == DELTA:
            turn.deltas.append(str(event.get("delta") or ""))
            if turn.first_delta_at is None:
                turn.first_delta_at = now
        elif kind == COMPLETED:
            turn.completed = str(event.get("transcript") or "")
            turn.completed_at = now
        elif kind == FAILED:
            turn.failed = dict(event.get("error") or {})
        elif kind == REFINED:
            turn.refined = event
            turn.words = [dict(word) for word in event.get("words") or []]
            turn.corrections = [Correction.from_event(item) for item in event.get("corrections") or []]
            if turn.completed is None and isinstance(event.get("transcript"), str):
                turn.completed = event["transcript"]
        return turn

    def _note_job_id(self, event: dict[str, Any]) -> None:
        if self.job_id is not None:
            return
        session = event.get("session") or {}
        relisten = session.get("relisten") if isinstance(session, dict) else None
        for holder in (event, session, event.get("relisten") or {}, relisten or {}):
            if isinstance(holder, dict) and isinstance(holder.get("job_id"), str):
                self.job_id = holder["job_id"]
                return

    @property
    def ordered(self) -> list[Turn]:
        """Turns in the order they were spoken (by where their speech starts, then by arrival)."""
        arrival = {item_id: index for index, item_id in enumerate(self.turns)}
        return sorted(
            self.turns.values(),
            key=lambda t: (t.audio_start_ms if t.audio_start_ms is not None else 1 << 62, arrival[t.item_id]),
        )

    @property
    def fatal_errors(self) -> list[dict[str, Any]]:
        return [error for error in self.errors if error.get("code") not in BENIGN_ERROR_CODES]

    def pending(self, *, want_refined: bool) -> list[Turn]:
        """Committed turns still waiting for their transcript (and, when ``want_refined``, for the
        refinement relisten sends after it). Once the client has committed at the end of its audio
        (``audio_ended``), a turn still open counts too: that commit ends it, unless the server
        answered that there was nothing to commit."""
        waiting_open = self.audio_ended and not self.commit_refused
        return [
            turn
            for turn in self.turns.values()
            if ((turn.committed or waiting_open) and not turn.settled)
            or (want_refined and turn.completed is not None and turn.refined is None)
        ]

    def transcript(self, *, completed_only: bool = False) -> str:
        """The session's text: completed turns (and, unless ``completed_only``, the deltas of the
        turns not completed)."""
        parts = [
            turn.completed if turn.completed is not None else ("" if completed_only else turn.delta_text)
            for turn in self.ordered
        ]
        return " ".join(part.strip() for part in parts if part and part.strip())

    def deltas_transcript(self) -> str:
        """What the first-pass deltas alone said, turn by turn."""
        return " ".join(turn.delta_text for turn in self.ordered if turn.delta_text)


# --- I/O -----------------------------------------------------------------------------------------


async def file_source(
    pcm: bytes, *, speed: float, clock: Callable[[], float] = time.monotonic
) -> AsyncIterator[bytes]:
    """``pcm`` in chunks, each released when real time (divided by ``speed``) reaches it; then
    ``TRAILING_SILENCE_S`` of silence at the same pace. Paced against the start time, not chunk to
    chunk, so that sleeping late never accumulates drift."""
    silence = bytes(int(REALTIME_RATE * TRAILING_SILENCE_S) * 2)
    start = clock()
    sent_s = 0.0
    for chunk in pcm_chunks(pcm) + pcm_chunks(silence):
        due = start + sent_s / speed
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        yield chunk
        sent_s += pcm_seconds(chunk)


def _handshake_error(exc: Exception, url: str) -> LiveError:
    """A clear message for a refused connection or upgrade."""
    from websockets.exceptions import InvalidStatus, InvalidURI

    if isinstance(exc, InvalidStatus):
        response = exc.response
        detail = bytes(response.body or b"").decode(errors="replace")[:500]
        with contextlib.suppress(ValueError, KeyError, TypeError):
            error = json.loads(detail)["error"]
            detail = f"{error['code']}: {error['message']}"
        return LiveError(f"{url}: the server refused the session (HTTP {response.status_code}): {detail}", 2)
    if isinstance(exc, InvalidURI):
        return LiveError(f"{url}: not a valid WebSocket URL", 2)
    return LiveError(f"cannot reach {url}: {exc}", 2)


@dataclass
class StreamResult:
    session: LiveSession
    started_at: float
    """Monotonic time the first audio chunk was sent (audio position 0)."""
    speed: float
    audio_s: float = 0.0

    def sent_at(self, audio_s: float) -> float:
        """Monotonic time the audio at ``audio_s`` seconds was sent (at the paced rate)."""
        return self.started_at + audio_s / self.speed


async def stream_session(
    url: str,
    source: AsyncIterator[bytes],
    *,
    api_key: str | None = None,
    language: str | None = None,
    prompt: str | None = None,
    speed: float = 1.0,
    on_event: Callable[[LiveSession, Turn | None, dict[str, Any]], None] | None = None,
    drain_timeout_s: float = 120.0,
    open_timeout_s: float = 15.0,
) -> StreamResult:
    """One realtime session: send ``source``'s chunks as they come, fold every server event into a
    :class:`LiveSession` (calling ``on_event`` after each), and when the audio ends commit what is
    left and wait for every committed turn's transcript (up to ``drain_timeout_s``), then close.

    Raises :class:`LiveError` when the connection is refused (exit code 2), when the server reports
    an error that ends the session, or when the connection drops before the turns are in.
    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    session = LiveSession()
    result = StreamResult(session, time.monotonic(), speed)
    try:
        ws = await connect(
            url, additional_headers=headers, open_timeout=open_timeout_s, proxy=None, max_size=2**24
        )
    except (InvalidHandshake, InvalidURI, OSError, TimeoutError) as exc:
        raise _handshake_error(exc, url) from exc

    closed_early: list[str] = []
    audio_done = asyncio.Event()
    settled = asyncio.Event()

    def check_settled() -> None:
        if audio_done.is_set():
            want_refined = any(turn.refined is not None for turn in session.turns.values())
            if not session.pending(want_refined=want_refined):
                settled.set()

    async def receive() -> None:
        try:
            async for message in ws:
                event = json.loads(message)
                if not isinstance(event, dict):
                    continue
                turn = session.apply(event, time.monotonic())
                if on_event:
                    on_event(session, turn, event)
                if event.get("type") == "error" and session.fatal_errors and _ends_session(event):
                    closed_early.append(_describe(event.get("error") or {}))
                    settled.set()
                    return
                check_settled()
        except ConnectionClosed as exc:
            if not settled.is_set():
                closed_early.append(
                    f"the server closed the connection ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
                )
        finally:
            settled.set()

    receiver = asyncio.create_task(receive())
    try:
        await ws.send(json.dumps(session_update(language=language, prompt=prompt)))
        result.started_at = time.monotonic()
        async for chunk in source:
            if settled.is_set():
                break  # the server ended the session
            if not result.audio_s:
                result.started_at = time.monotonic()
            await ws.send(append_event(chunk))
            result.audio_s += pcm_seconds(chunk)
        if not settled.is_set():
            session.audio_ended = True
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            audio_done.set()
            check_settled()
            await _wait_settled(settled, session, drain_timeout_s)
    except ConnectionClosed:
        await asyncio.wait_for(receiver, 5)
    finally:
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await receiver
        with contextlib.suppress(Exception):
            await ws.close()
    if closed_early:
        raise LiveError(closed_early[0], 2 if _auth_error(session) else 1)
    return result


async def _wait_settled(settled: asyncio.Event, session: LiveSession, timeout_s: float) -> None:
    """Wait for the last turns; the wait for a refinement is capped at ``REFINED_GRACE_S`` after
    its turn completed (a server may not refine every turn)."""
    deadline = time.monotonic() + timeout_s
    while not settled.is_set():
        now = time.monotonic()
        if now > deadline:
            waiting = session.pending(want_refined=False)
            raise LiveError(f"{len(waiting)} turn(s) still without a transcript after {timeout_s:.0f} s")
        unrefined = session.pending(want_refined=True)
        if unrefined and all(
            turn.completed_at is not None and now - turn.completed_at > REFINED_GRACE_S for turn in unrefined
        ):
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(settled.wait(), 0.25)


AUTH_ERROR_CODES = frozenset({"missing_api_key", "invalid_api_key", "unauthorized", "forbidden"})
REFUSAL_CODES = AUTH_ERROR_CODES | {
    "unsupported_intent",
    "rate_limited",
    "too_many_sessions",
    "service_unavailable",
    "session_idle",
    "session_expired",
}
"""Errors after which the server closes the session; others (a malformed event, an empty commit)
leave it running, as in the protocol."""


def _ends_session(event: dict[str, Any]) -> bool:
    return str((event.get("error") or {}).get("code") or "") in REFUSAL_CODES


def _auth_error(session: LiveSession) -> bool:
    """The session was refused before it began (its key, its intent, no room): exit code 2."""
    return any(str(error.get("code")) in REFUSAL_CODES for error in session.errors) and not session.turns


def _describe(error: dict[str, Any]) -> str:
    return f"{error.get('code') or error.get('type') or 'error'}: {error.get('message') or ''}".strip()


# --- the command ---------------------------------------------------------------------------------


def render_turn(turn: Turn) -> Any:
    """One turn as rich text: deltas in grey italics while the turn is open; once refined, the text
    with each accepted correction shown as struck-through before and bold after, and words the
    models were unsure of underlined."""
    from rich.text import Text

    if turn.failed is not None:
        return Text(f"[turn failed: {_describe(turn.failed)}] {turn.delta_text}", style="red")
    if turn.completed is None:
        return Text(turn.delta_text, style="italic grey50")
    line = Text()
    text = turn.completed.strip()
    position = 0
    for correction in (c for c in turn.corrections if c.status == "accepted" and c.after):
        found = text.find(correction.after, position)
        if found < 0:
            continue
        _append_words(line, text[position:found], turn)
        if correction.before:
            line.append(correction.before, style="dim strike")
            line.append(" ")
        line.append(correction.after, style="bold green")
        position = found + len(correction.after)
    _append_words(line, text[position:], turn)
    for correction in (c for c in turn.corrections if c.status != "accepted"):
        line.append(f"  ({correction.status}: {correction.before} -> {correction.after})", style="dim")
    return line


def _append_words(line: Any, text: str, turn: Turn) -> None:
    """``text`` with the words the refined turn marks unsure (probability < 0.5) underlined."""
    unsure = {
        str(word.get("word", "")).strip().lower()
        for word in turn.words
        if isinstance(word.get("probability"), int | float) and float(word["probability"]) < 0.5
    }
    for piece in re.split(r"(\s+)", text):
        unsure_word = piece.strip() and piece.strip(".,!?;:\"'").lower() in unsure
        line.append(piece, style="underline yellow" if unsure_word else "")


def run(
    *,
    server: str,
    api_key: str | None,
    file: Path | None,
    mic: bool,
    speed: float,
    language: str | None,
    prompt: str | None,
    timeout_s: float,
) -> int:
    """The ``relisten live`` command; its exit code (0 ok, 1 the session failed, 2 cannot start)."""
    from rich.console import Console

    out = Console()
    err = Console(stderr=True)
    if speed <= 0:
        err.print("[red]--speed must be above 0")
        return 2
    try:
        url = realtime_url(server)
        pcm = None if mic else decode_pcm24(_need(file))
        sounddevice = _sounddevice() if mic else None
    except LiveError as exc:
        err.print(f"[red]{exc}")
        return exc.exit_code
    printer = _Printer(out, err)

    async def session() -> StreamResult:
        source = _mic_chunks(sounddevice) if pcm is None else file_source(pcm, speed=speed)
        return await stream_session(
            url,
            source,
            api_key=api_key,
            language=language,
            prompt=prompt,
            speed=speed,
            on_event=printer.show,
            drain_timeout_s=timeout_s,
        )

    try:
        with printer:
            result = asyncio.run(session())
    except LiveError as exc:
        err.print(f"[red]{exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("[yellow]interrupted")
        return 130
    printer.finish(result.session)
    done = result.session
    accepted = sum(c.status == "accepted" for t in done.turns.values() for c in t.corrections)
    failed = sum(t.failed is not None for t in done.turns.values())
    err.print(
        f"{len(done.turns)} turn(s) over {result.audio_s:.1f} s of audio; {accepted} correction(s) accepted"
        + (f"; {failed} turn(s) failed" if failed else "")
        + (f"; degraded {len(done.degraded)} time(s)" if done.degraded else ""),
        highlight=False,
    )
    if done.job_id:
        err.print(
            f"job {done.job_id}: {server.rstrip('/')}/v1/jobs/{done.job_id}", highlight=False, soft_wrap=True
        )
    return 1 if failed and failed == len(done.turns) else 0


class _Printer:
    """Shows the session as it goes. On a terminal, a rich ``Live`` display redrawn on every event
    (deltas appear as they come, a turn's line is replaced by its refined text); otherwise one plain
    line per turn on stdout once the turn is final (so the output can be piped), corrections and
    notices on stderr."""

    def __init__(self, out: Any, err: Any) -> None:
        from rich.live import Live

        self.out = out
        self.err = err
        self.live = Live(console=out, auto_refresh=False, transient=False) if out.is_terminal else None
        self.printed: set[str] = set()
        self.awaiting: Turn | None = None
        """A completed turn whose ``relisten.turn.refined`` may follow at once."""

    def __enter__(self) -> _Printer:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.stop()

    def show(self, session: LiveSession, turn: Turn | None, event: dict[str, Any]) -> None:
        kind = str(event.get("type", ""))
        # While the live display owns the terminal, notices go above it through its console.
        notices = self.live.console if self.live is not None else self.err
        error = event.get("error") or {}
        if kind == "error" and error.get("code") not in BENIGN_ERROR_CODES:
            notices.print(f"[red]server error: {_describe(error)}", highlight=False)
        elif kind == "relisten.session.degraded":
            reason = event.get("message") or f"the server falls behind ({event.get('reason') or 'delay'})"
            notices.print(f"[yellow]{reason}", highlight=False)
        elif kind == "relisten.session.recovered":
            notices.print("[green]the server has caught up: turns are refined again")
        if self.live is not None:
            from rich.console import Group

            self.live.update(
                Group(*(render_turn(t) for t in session.ordered if t.text or t.failed)), refresh=True
            )
            return
        # A completed turn waits for its refinement until an event about another turn comes (events
        # about no turn, such as conversation.item.done, may come in between).
        if self.awaiting is not None and turn is not None and turn is not self.awaiting:
            self._print(self.awaiting)
            self.awaiting = None
        if turn is None or turn.item_id in self.printed:
            return
        if kind == COMPLETED:
            self.awaiting = turn
        elif turn.settled and kind in (REFINED, FAILED):
            self._print(turn)
            if turn is self.awaiting:
                self.awaiting = None

    def finish(self, session: LiveSession) -> None:
        if self.live is not None:
            return
        for turn in session.ordered:  # turns whose refinement never came
            self._print(turn)

    def _print(self, turn: Turn) -> None:
        if turn.item_id in self.printed or not turn.settled:
            return
        self.printed.add(turn.item_id)
        if turn.failed is not None:
            self.err.print(f"turn failed: {_describe(turn.failed)}", markup=False)
        if turn.text:
            self.out.print(turn.text, markup=False, highlight=False, soft_wrap=True)
        for correction in turn.corrections:
            self.err.print(
                f"  {correction.status}: {correction.before!r} -> {correction.after!r}", markup=False
            )


def _need(file: Path | None) -> Path:
    if file is None:
        raise LiveError("give a FILE to stream, or --mic", 2)
    if not file.is_file():
        raise LiveError(f"{file}: no such file", 2)
    return file


def _sounddevice() -> Any:
    """The optional ``sounddevice`` module once it is known to have an input device. Without the
    package, PortAudio or an input device: :class:`LiveError` with exit code 2."""
    try:
        import sounddevice  # type: ignore[import-not-found, unused-ignore]
    except (ImportError, OSError) as exc:
        raise LiveError(
            f"--mic needs the sounddevice package and the PortAudio library ({exc}); install them "
            "(pip install sounddevice; Debian: apt-get install libportaudio2) or stream a file instead",
            2,
        ) from exc
    try:
        sounddevice.query_devices(kind="input")
    except Exception as exc:
        raise LiveError(f"--mic: no sound input device ({exc})", 2) from exc
    return sounddevice


async def _mic_chunks(sounddevice: Any) -> AsyncIterator[bytes]:
    """The default input device as pcm16 24 kHz chunks until Ctrl+C, which ends the audio (the last
    turn is then committed and its transcript awaited) instead of the program."""
    import signal

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    stop = asyncio.Event()
    rate = int(sounddevice.query_devices(kind="input").get("default_samplerate") or REALTIME_RATE)

    def callback(indata: np.ndarray, frames: int, when: Any, status: Any) -> None:
        pcm = float_to_pcm24(indata[:, 0].astype(np.float32), rate)
        loop.call_soon_threadsafe(queue.put_nowait, pcm)

    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        with sounddevice.InputStream(
            samplerate=rate, channels=1, dtype="float32", blocksize=int(rate * CHUNK_S), callback=callback
        ):
            while not stop.is_set():
                getter = asyncio.ensure_future(queue.get())
                stopper = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if getter in done:
                    yield getter.result()
                else:
                    getter.cancel()
    finally:
        loop.remove_signal_handler(signal.SIGINT)
