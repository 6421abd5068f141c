"""``Idempotency-Key`` on the routes that create jobs, against a real nats-server: repeated and racing
requests make one job, a reused key with another body is refused, keys are scoped per API key, a
failed admission gives the key back, an abandoned claim is taken over, and the ``openai`` SDK's own
retry after its timeout follows the first job instead of starting a second."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable

import httpx
import openai
import pytest
from relisten_contracts import STREAM_NAME, Subject, encode
from relisten_ingest import idempotency
from relisten_ingest.adapters import JobViews
from relisten_ingest.settings import IngestSettings
from relisten_runtime.infra import Infra

from .conftest import SPEECH_WAV, STEREO_MP3, ServeApp, StartClient
from .fake_pipeline import TEXT, fake_services

pytestmark = pytest.mark.nats

AUDIO = SPEECH_WAV.read_bytes()


async def jobs_created(infra: Infra) -> int:
    info = await infra.js.stream_info(STREAM_NAME, subjects_filter=str(Subject.JOB_CREATED))
    return sum((info.state.subjects or {}).values())


@pytest.fixture
async def client(
    start_client: StartClient, make_settings: Callable[..., IngestSettings]
) -> AsyncIterator[httpx.AsyncClient]:
    async with start_client(make_settings()) as made:
        yield made


def upload(key: str, data: bytes = AUDIO, **fields: str) -> dict[str, object]:
    return {
        "files": {"file": ("talk.wav", data, "audio/wav")},
        "data": fields,
        "headers": {"Idempotency-Key": key},
    }


async def test_the_same_key_twice_is_one_job(client: httpx.AsyncClient, infra: Infra) -> None:
    before = await jobs_created(infra)
    first = await client.post("/v1/jobs", **upload("same-1", language="en"))  # type: ignore[arg-type]
    assert first.status_code == 202, first.text
    again = await client.post("/v1/jobs", **upload("same-1", language="en"))  # type: ignore[arg-type]
    assert again.status_code == 202, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await jobs_created(infra) == before + 1
    other = await client.post("/v1/jobs", **upload("same-2", language="en"))  # type: ignore[arg-type]
    assert other.json()["id"] != first.json()["id"]
    assert await jobs_created(infra) == before + 2


async def test_racing_requests_with_one_key_make_one_job(client: httpx.AsyncClient, infra: Infra) -> None:
    before = await jobs_created(infra)
    answers = await asyncio.gather(
        *(client.post("/v1/jobs", **upload("race")) for _ in range(5))  # type: ignore[arg-type]
    )
    assert [a.status_code for a in answers] == [202] * 5, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(1 for a in answers if "idempotent-replayed" not in a.headers) == 1
    assert await jobs_created(infra) == before + 1


async def test_a_key_reused_for_another_request_is_422(client: httpx.AsyncClient, infra: Infra) -> None:
    before = await jobs_created(infra)
    first = await client.post("/v1/jobs", **upload("reused"))  # type: ignore[arg-type]
    assert first.status_code == 202
    other_file = await client.post("/v1/jobs", **upload("reused", data=STEREO_MP3.read_bytes()))  # type: ignore[arg-type]
    assert other_file.status_code == 422
    assert other_file.json()["error"]["code"] == "idempotency_key_reused"
    other_field = await client.post("/v1/jobs", **upload("reused", prompt="Quilter"))  # type: ignore[arg-type]
    assert other_field.status_code == 422
    other_route = await client.post("/v1/audio/transcriptions", **upload("reused"))  # type: ignore[arg-type]
    assert other_route.status_code == 422
    assert other_route.json()["error"]["code"] == "idempotency_key_reused"
    assert await jobs_created(infra) == before + 1


async def test_an_unusable_key_is_400(client: httpx.AsyncClient, infra: Infra) -> None:
    before = await jobs_created(infra)
    for bad in (b"", b"x" * 256, "caf\u00e9".encode(), b"tab\there"):
        answer = await client.post(
            "/v1/jobs",
            files={"file": ("talk.wav", AUDIO)},
            headers={b"Idempotency-Key": bad},
        )
        assert answer.status_code == 400, bad
        assert answer.json()["error"]["code"] == "invalid_idempotency_key"
    assert await jobs_created(infra) == before


async def test_a_failed_admission_gives_the_key_back(client: httpx.AsyncClient, infra: Infra) -> None:
    before = await jobs_created(infra)
    bad = await client.post("/v1/jobs", **upload("released", data=b"not audio at all"))  # type: ignore[arg-type]
    assert bad.status_code == 415
    assert await _deleted(infra, idempotency.entry_key(idempotency.scope_of(None, "127.0.0.1"), "released"))
    again = await client.post("/v1/jobs", **upload("released", data=b"not audio at all"))  # type: ignore[arg-type]
    assert again.status_code == 415, "the key was left claimed by the failed request"
    good = await client.post("/v1/jobs", **upload("released"))  # type: ignore[arg-type]
    assert good.status_code == 202
    assert await jobs_created(infra) == before + 1


async def _deleted(infra: Infra, key: str) -> bool:
    try:
        entry = await infra.idempotency.get(key)
    except Exception:
        return True
    return not entry.value


async def test_keys_are_scoped_per_api_key(
    start_client: StartClient, make_settings: Callable[..., IngestSettings], infra: Infra
) -> None:
    before = await jobs_created(infra)
    async with start_client(make_settings(api_keys="alpha,beta")) as client:
        ids = []
        for key in ("alpha", "beta", "alpha"):
            answer = await client.post(
                "/v1/jobs",
                files={"file": ("talk.wav", AUDIO)},
                headers={"Idempotency-Key": "shared", "Authorization": f"Bearer {key}"},
            )
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["id"])
    assert ids[0] == ids[2] != ids[1]
    assert await jobs_created(infra) == before + 2


async def test_an_abandoned_claim_is_taken_over(client: httpx.AsyncClient, infra: Infra) -> None:
    before = await jobs_created(infra)
    fields = {"language": "en"}
    key = idempotency.entry_key(idempotency.scope_of(None, "127.0.0.1"), "abandoned")
    fingerprint = idempotency.fingerprint(
        "/v1/jobs", {"language": ["en"]}, "talk.wav", hashlib.sha256(AUDIO).hexdigest()
    )
    # A request that claimed the key and died before storing its job, longer ago than the lease.
    stale = idempotency.Claim(
        fingerprint=fingerprint, job_id="died", claimed_at=time.time() - idempotency.CLAIM_LEASE_S - 1
    )
    await infra.idempotency.create(key, encode(stale))
    answer = await client.post("/v1/jobs", **upload("abandoned", **fields))  # type: ignore[arg-type]
    assert answer.status_code == 202, answer.text
    assert answer.json()["id"] != "died"
    assert await jobs_created(infra) == before + 1


async def test_a_waiting_claim_that_is_not_stale_answers_409_after_the_wait(infra: Infra) -> None:
    store = idempotency.IdempotencyStore(infra.idempotency, JobViews.of(infra))
    mine = await store.claim("k409", "fp", "job-a")
    assert isinstance(mine, idempotency.Claimed)
    with pytest.raises(idempotency.IdempotencyError) as caught:
        await store.claim("k409", "fp", "job-b", wait_s=0.0)
    assert caught.value.status == 409 and caught.value.code == "idempotency_key_in_use"
    with pytest.raises(idempotency.IdempotencyError) as reused:
        await store.claim("k409", "other", "job-c", wait_s=0.0)
    assert reused.value.code == "idempotency_key_reused"
    await store.release(mine)
    again = await store.claim("k409", "fp", "job-d", wait_s=0.0)
    assert isinstance(again, idempotency.Claimed) and again.job_id == "job-d"


@pytest.fixture
async def server(serve_app: ServeApp, make_settings: Callable[..., IngestSettings]) -> AsyncIterator[str]:
    async with serve_app(make_settings(openai_timeout_s=60, events_heartbeat_s=0.2)) as base:
        yield base


async def test_the_openai_sdk_retrying_after_its_timeout_follows_the_first_job(
    server: str, infra: Infra
) -> None:
    before = await jobs_created(infra)
    # The pipeline takes longer than the client's timeout: the SDK gives up on the first request
    # and sends it again with the same headers. Without the key that was a second job.
    async with (
        fake_services(infra, delay_s=1.5) as pipeline,
        openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=4, timeout=1.0) as sdk,
    ):
        result = await sdk.audio.transcriptions.create(
            model="whisper-1",
            file=("talk.wav", AUDIO),
            extra_headers={"Idempotency-Key": "sdk-retry-1"},
        )
        assert result.text == TEXT
        assert len(pipeline) == 1
    assert await jobs_created(infra) == before + 1


async def test_racing_openai_requests_share_one_job(server: str, infra: Infra) -> None:
    async with (
        fake_services(infra, delay_s=0.3) as pipeline,
        httpx.AsyncClient(base_url=server, timeout=30) as http,
    ):
        answers = await asyncio.gather(
            *(http.post("/v1/audio/transcriptions", **upload("oa-race", model="m")) for _ in range(3))  # type: ignore[arg-type]
        )
    assert [a.status_code for a in answers] == [200] * 3, [a.text for a in answers]
    assert {a.json()["text"] for a in answers} == {TEXT}
    assert len({a.headers["x-relisten-job-id"] for a in answers}) == 1
    assert len(pipeline) == 1
