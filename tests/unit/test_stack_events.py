"""How the stack reads a job's event stream."""

from __future__ import annotations

from relisten.stack import server_sent_events


def test_events_are_read_up_to_their_blank_line_and_comments_are_skipped() -> None:
    body = (
        'id: 1\nevent: state\ndata: {"status":"queued"}\n\n'
        ": keep-alive\n\n"
        "data: no name, no event\n\n"
        'id: 2\nevent: completed\ndata: {"stats":null}\n\n'
        "event: cut off before its blank line"
    )
    assert list(server_sent_events(body.split("\n"))) == [
        ("state", '{"status":"queued"}'),
        ("completed", '{"stats":null}'),
    ]
