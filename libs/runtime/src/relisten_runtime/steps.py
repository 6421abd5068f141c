"""A pipeline step as a service writes it: a declaration from :mod:`relisten_contracts.flow` and a typed
handler bound to it.

A handler receives the decoded event of its step's ``consumes`` type and returns the events to publish;
the worker (:class:`relisten_runtime.worker.Worker`) publishes them, with their deterministic message
ids, after the handler returns, then acknowledges. A handler that must publish while it works (progress
of a long first pass, each clip's answer as soon as it is stored) does so through a :class:`Publisher`,
the one narrow port it is given; everything else about NATS (subscribing, decoding, acknowledging,
retrying, failing the job) is the worker's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from relisten_contracts import Event
from relisten_contracts.flow import StepSpec

E = TypeVar("E", bound=Event)

Handler = Callable[[E], Awaitable[Sequence[Event]]]
"""What a step runs: its event in, the events to publish out (an empty sequence for none)."""

NOTHING: Sequence[Event] = ()
"""What a handler returns when it has nothing to publish."""


class Publisher(Protocol):
    """Publishes one event now, with its deterministic message id (the worker is one)."""

    async def publish(self, event: Event) -> None: ...


@dataclass(frozen=True)
class Step:
    """A declaration and the handler bound to it."""

    spec: StepSpec[Event]
    handler: Handler[Any]


class UndeclaredEvent(TypeError):
    """A handler returned or published an event its step does not declare: a bug, caught before it
    reaches the stream (the flow document and the README would not show it)."""


def check_declared(allowed: tuple[type[Event], ...], event: Event, who: str) -> None:
    if not isinstance(event, allowed):
        declared = ", ".join(kind.__name__ for kind in allowed) or "nothing"
        raise UndeclaredEvent(f"{who} published {type(event).__name__}; it declares {declared}")


class RecordingPublisher:
    """A :class:`Publisher` that keeps what it is given (handler tests, with ``MemoryJobStore``)."""

    def __init__(self) -> None:
        self.published: list[Event] = []

    async def publish(self, event: Event) -> None:
        self.published.append(event)
