"""Wiring of the asr service: its one step, ``transcribing`` (job.created -> words.scored), and its
capabilities on record."""

from __future__ import annotations

import logging

from relisten_contracts import flow
from relisten_runtime.store import nats_store_of
from relisten_runtime.worker import Worker

from relisten_asr.engines import FasterWhisperEngine, build_engine
from relisten_asr.handlers import FirstPassHandler
from relisten_asr.language import LanguageRouter
from relisten_asr.live import LiveFirstPassResponder, live_responder
from relisten_asr.settings import AsrSettings

log = logging.getLogger(__name__)


class AsrWorker(Worker):
    """The worker, plus: on start it stores what languages and tasks this configuration can do, so that
    ingest refuses at submission what no configured model can transcribe."""

    def __init__(
        self, settings: AsrSettings, router: LanguageRouter, live: LiveFirstPassResponder | None = None
    ) -> None:
        super().__init__("asr", settings)
        self.router = router
        self.live = live

    async def start(self, *, wait_for_nats: bool = True) -> None:
        await super().start(wait_for_nats=wait_for_nats)
        if self.live is not None:
            # Live first passes (core NATS request/reply) beside the job consumer.
            await self.live.subscribe(self.infra.nc)
        capabilities = self.router.capabilities()
        await nats_store_of(self).put_asr_capabilities(capabilities)
        log.info(
            "capabilities: %d languages, translate %s (%s)",
            len(capabilities.languages),
            "yes" if capabilities.translate else "no",
            ", ".join(capabilities.engines),
        )


def build_worker(settings: AsrSettings | None = None) -> Worker:
    settings = settings or AsrSettings()
    engine = build_engine(settings)
    router = LanguageRouter(settings, engine)
    live = live_responder(settings, engine, router)
    worker = AsrWorker(settings, router, live)
    worker.on_stop(live.aclose)
    load = getattr(engine, "load", None)
    if load is not None:
        # fail at start-up on a model that cannot load, not on the first job
        router.primary_loaded(load())
        if isinstance(engine, FasterWhisperEngine):
            engine.load_partial_lane()
    worker.on_stop(engine.aclose)
    if router.multilingual is not None and router.multilingual is not engine:
        worker.on_stop(router.multilingual.aclose)
    # jobs' first passes are calibrated as live turns' are (live_responder reads the setting)
    handler = FirstPassHandler(worker, nats_store_of(worker), engine, router, live.calibration)
    worker.step(flow.TRANSCRIBING, handler)
    return worker
