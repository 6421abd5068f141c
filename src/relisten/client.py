"""A small client of the relisten HTTP API, used by ``relisten transcribe``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

TERMINAL = {"completed", "failed"}


class ApiError(RuntimeError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message} (HTTP {status})")
        self.status = status
        self.code = code


def _raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        error = response.json()["error"]
        raise ApiError(response.status_code, str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        raise ApiError(response.status_code, "http_error", response.text[:500]) from None


class RelistenClient:
    def __init__(self, server: str, api_key: str | None = None, timeout_s: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=timeout_s)

    def submit(self, path: Path, **options: str | float | None) -> dict[str, Any]:
        form = {key: str(value) for key, value in options.items() if value is not None}
        with path.open("rb") as audio:
            response = self.http.post("/v1/jobs", files={"file": (path.name, audio)}, data=form)
        _raise_for_error(response)
        job: dict[str, Any] = response.json()
        return job

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/jobs/{job_id}")
        _raise_for_error(response)
        view: dict[str, Any] = response.json()
        return view

    def wait(
        self,
        job_id: str,
        on_update: Callable[[dict[str, Any]], None] | None = None,
        poll_s: float = 0.5,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            view = self.job(job_id)
            if on_update:
                on_update(view)
            if view["status"] in TERMINAL:
                return view
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {view['status']} after {timeout_s} s")
            time.sleep(poll_s)

    def transcript(self, job_id: str, fmt: str = "json") -> httpx.Response:
        response = self.http.get(f"/v1/jobs/{job_id}/transcript", params={"format": fmt})
        _raise_for_error(response)
        return response
