"""The six services by name, each built lazily so a process imports only the one it runs."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable

from relisten_runtime.logs import configure_logging
from relisten_runtime.settings import CommonSettings

SERVICES = ("ingest", "asr", "clipper", "corrector", "merger", "notifier")
WORKER_SERVICES = SERVICES[1:]

log = logging.getLogger(__name__)


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def run_service(name: str) -> None:
    """Run one service in this process until SIGINT/SIGTERM."""
    if name not in SERVICES:
        raise ValueError(f"unknown service {name!r}; choose one of {', '.join(SERVICES)}")
    common = CommonSettings()
    configure_logging(common.log_level, name, common.log_format)
    if name == "ingest":
        ingest = importlib.import_module("relisten_ingest.app")
        await ingest.serve()
        return
    module = importlib.import_module(f"relisten_{name}.app")
    build: Callable[[], object] = module.build_worker
    worker = build()
    stop = asyncio.Event()
    _stop_on_signals(stop)
    run: Callable[[asyncio.Event], Awaitable[None]] = worker.run_forever  # type: ignore[attr-defined]
    await run(stop)
    if getattr(worker, "handed_back_on_stop", 0):
        # Work handed back at shutdown may still run in a thread (a model call cannot be interrupted),
        # and the interpreter would wait for it before exiting. Its event is back in NATS and the
        # connections are closed: leave now, so a restart is not held up.
        log.info("%s: leaving without waiting for handed-back work still running in threads", name)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
