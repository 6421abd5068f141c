"""``relisten health <service>``: a health check for container orchestrators (compose healthcheck).

A worker is healthy when NATS answers at ``RELISTEN_NATS_URL``, JetStream answers, and the durable
consumers the service reads from exist on the stream (a worker creates them when it starts, so a missing
one means the service never got going). Ingest has its HTTP ``/readyz`` and is checked through it.
"""

from __future__ import annotations

import asyncio

from relisten_contracts import STREAM_NAME, flow
from relisten_runtime.settings import CommonSettings

CONSUMERS: dict[str, tuple[str, ...]] = {
    service: tuple(step.durable for step in flow.steps_of(service))
    for service in dict.fromkeys(step.service for step in flow.STEPS)
}
"""The durable consumers of each service: its declared steps (:mod:`relisten_contracts.flow`)."""


async def problems(service: str, nats_url: str, timeout_s: float = 5.0) -> list[str]:
    """What is wrong with ``service``'s view of NATS; empty when healthy."""
    import nats
    import nats.errors
    from nats.js.errors import NotFoundError

    servers = [u.strip() for u in nats_url.split(",") if u.strip()]
    try:
        nc = await nats.connect(servers=servers, connect_timeout=timeout_s, max_reconnect_attempts=1)
    except (OSError, nats.errors.Error) as exc:
        return [f"cannot connect to NATS at {nats_url}: {exc!r}"]
    try:
        js = nc.jetstream(timeout=timeout_s)
        found: list[str] = []
        for durable in CONSUMERS[service]:
            try:
                await js.consumer_info(STREAM_NAME, durable)
            except NotFoundError:
                found.append(f"consumer {durable} of stream {STREAM_NAME} does not exist")
            except (OSError, nats.errors.Error) as exc:
                found.append(f"JetStream does not answer: {exc!r}")
                break
        return found
    finally:
        await nc.close()


def check(service: str) -> int:
    """Exit code of ``relisten health``: 0 healthy, 1 not (with the reasons on stdout)."""
    found = asyncio.run(problems(service, CommonSettings().nats_url))
    for problem in found:
        print(f"{service}: {problem}")
    if not found:
        print(f"{service}: healthy")
    return 1 if found else 0
