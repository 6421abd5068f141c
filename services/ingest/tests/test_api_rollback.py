"""A job whose admission fails half-way leaves nothing behind (fresh nats-server for this module)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from relisten_contracts import Event
from relisten_ingest.app import create_app
from relisten_ingest.settings import IngestSettings

from .conftest import SPEECH_WAV, NothingStored

pytestmark = pytest.mark.nats


@pytest.mark.parametrize("failing_step", ["publish", "view"])
async def test_failure_after_partial_storage_stores_nothing(
    make_settings: Callable[..., IngestSettings], assert_nothing_stored: NothingStored, failing_step: str
) -> None:
    app = create_app(make_settings())
    async with app.router.lifespan_context(app):
        await app.state.ingest.wait_ready(30)
        service_infra = app.state.ingest.infra
        if failing_step == "publish":
            # Both objects and the view are written by then: all three must be removed again.
            async def broken_publish(event: Event) -> None:
                raise ConnectionError("stream unavailable")

            service_infra.publish = broken_publish
        else:
            real_create = service_infra.jobs.create

            async def broken_create(key: str, value: bytes) -> int:
                raise TimeoutError("kv unavailable")

            service_infra.jobs.create = broken_create
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            response = await client.post("/v1/jobs", files={"file": ("a.wav", SPEECH_WAV.read_bytes())})
        if failing_step == "view":
            service_infra.jobs.create = real_create
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "storage_unavailable"
    await assert_nothing_stored(allow_tombstones=True)
