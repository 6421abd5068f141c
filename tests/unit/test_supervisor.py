"""`relisten up`'s pure parts: the --replicas parser, the NATS nodes it would start, restart backoff."""

from __future__ import annotations

from pathlib import Path

import pytest

from relisten.supervisor import Backoff, embedded_nodes, parse_replicas


def test_replicas_are_parsed_per_service() -> None:
    assert parse_replicas("asr=2, corrector=3,") == {"asr": 2, "corrector": 3}
    assert parse_replicas("") == {}


@pytest.mark.parametrize("text", ["asr", "asr=two", "whisper=2", "asr=0", "asr=99"])
def test_bad_replicas_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_replicas(text)


def test_one_node_is_a_plain_server_with_its_store_in_data_dir_nats(tmp_path: Path) -> None:
    (node,) = embedded_nodes(tmp_path, 4222, 1)
    assert node.url == "nats://127.0.0.1:4222"
    assert node.store_dir == tmp_path / "nats"
    assert "--cluster" not in node.command()
    assert node.sync_interval == "always"


def test_three_nodes_route_to_each_other_with_distinct_stores(tmp_path: Path) -> None:
    nodes = embedded_nodes(tmp_path, 4222, 3, sync_interval=None)
    assert [n.port for n in nodes] == [4222, 4223, 4224]
    assert [n.cluster_port for n in nodes] == [6222, 6223, 6224]
    assert len({n.store_dir for n in nodes}) == 3
    assert len({n.name for n in nodes}) == 3
    for node in nodes:
        command = node.command()
        assert command[command.index("--cluster_name") + 1] == "relisten"
        routes = command[command.index("--routes") + 1].split(",")
        assert sorted(routes) == sorted(str(n.cluster_url) for n in nodes if n is not node)
        assert "-c" not in command  # no sync_interval, no config file


def test_sync_interval_goes_into_a_config_file(tmp_path: Path) -> None:
    (node,) = embedded_nodes(tmp_path, 4222, 1, sync_interval="10s")
    command = node.command()
    config = Path(command[command.index("-c") + 1])
    assert 'sync_interval: "10s"' in config.read_text()


def test_backoff_doubles_for_a_process_that_keeps_dying_and_is_capped() -> None:
    backoff = Backoff(max_s=4.0)
    backoff.started()
    delays = []
    for _ in range(5):
        delays.append(backoff.schedule())
        backoff.started()  # restarted, and dies again at once
    assert delays == [1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.pending() is False


def test_backoff_restarts_a_long_running_process_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    backoff = Backoff()
    backoff.started()
    backoff.started_at -= 3600  # it ran for an hour
    assert backoff.schedule() == 0.5
    assert backoff.pending()


def test_up_takes_the_cluster_size_replicas_and_sync_interval() -> None:
    from relisten.cli import _parser

    args = _parser().parse_args(["up", "--nats-cluster", "3", "--replicas", "asr=2,corrector=2"])
    assert (args.nats_cluster, args.replicas, args.nats_sync_interval) == (
        3,
        {"asr": 2, "corrector": 2},
        "always",
    )
    assert _parser().parse_args(["up"]).replicas == {}


def test_a_bad_replicas_variable_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from relisten.cli import _parser

    monkeypatch.setenv("RELISTEN_REPLICAS", "asr=many")
    with pytest.raises(SystemExit) as exited:
        _parser().parse_args(["up"])
    assert exited.value.code == 2
