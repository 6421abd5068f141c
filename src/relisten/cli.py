"""The ``relisten`` command: ``up`` runs the stack, ``worker`` one service, ``health`` checks one,
``transcribe`` a file, ``live`` streams one (or the microphone) to the realtime WebSocket."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from relisten.command_settings import CommandSettings
from relisten.services import SERVICES

FORMATS = {"txt": "text", "text": "text", "json": "json", "srt": "srt", "vtt": "vtt"}


def _parser() -> argparse.ArgumentParser:
    env = CommandSettings()
    parser = argparse.ArgumentParser(prog="relisten", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser(
        "up", help="start NATS (embedded unless RELISTEN_NATS_URL is set) and all services"
    )
    up.add_argument("--port", type=int, default=env.port)
    up.add_argument("--nats-port", type=int, default=env.nats_port)
    up.add_argument("--data-dir", type=Path, default=env.data_dir)
    up.add_argument(
        "--nats-cluster",
        type=int,
        default=env.nats_cluster,
        metavar="N",
        help="run N nats-server processes on loopback as one JetStream cluster (N replicas of everything)",
    )
    up.add_argument(
        "--replicas",
        type=_replicas,
        # A string default goes through ``type`` too, so a bad RELISTEN_REPLICAS is a usage error.
        default=env.replicas,
        metavar="SERVICE=N,...",
        help="processes per service, e.g. asr=2,corrector=2 (1 for any service not named)",
    )
    up.add_argument(
        "--nats-sync-interval",
        default=env.nats_sync_interval,
        metavar="always|DURATION",
        help="how often the embedded JetStream fsyncs (always, or e.g. 10s; 'default' keeps the server's 2m)",
    )

    worker = commands.add_parser(
        "worker", help="run one service against RELISTEN_NATS_URL (scale by starting more)"
    )
    worker.add_argument("service", choices=SERVICES)

    health = commands.add_parser(
        "health", help="exit 0 when a service's NATS connection and consumers are in place (healthchecks)"
    )
    health.add_argument("service", choices=SERVICES)

    transcribe = commands.add_parser(
        "transcribe", help="upload a recording to a running relisten and print the result"
    )
    transcribe.add_argument("file", type=Path)
    transcribe.add_argument("--server", default=env.server)
    transcribe.add_argument("--api-key", default=env.api_key)
    transcribe.add_argument("--language", help="ISO 639-1 code; absent: identified")
    transcribe.add_argument(
        "--task", choices=["transcribe", "translate"], default=None, help="translate: English text out"
    )
    transcribe.add_argument("--prompt", help="glossary or context for both passes")
    transcribe.add_argument("--correction", choices=["auto", "off"], default=None)
    transcribe.add_argument("--confidence-threshold", type=float, default=None)
    transcribe.add_argument("--callback-url")
    transcribe.add_argument("--format", choices=sorted(FORMATS), default="txt")
    transcribe.add_argument("--output", "-o", type=Path, help="write the transcript here instead of stdout")
    transcribe.add_argument(
        "--timeout", type=float, default=None, help="give up waiting after this many seconds"
    )

    # relisten live (issue 14, client side): stream audio to the realtime WebSocket.
    live = commands.add_parser(
        "live",
        help="stream a recording (at real-time pace) or the microphone to /v1/realtime, live transcript",
    )
    source = live.add_mutually_exclusive_group(required=True)
    source.add_argument("file", type=Path, nargs="?", help="any audio or video file PyAV decodes")
    source.add_argument("--mic", action="store_true", help="the default sound input (needs sounddevice)")
    live.add_argument("--speed", type=float, default=1.0, help="N times real time (file only)")
    live.add_argument("--language", help="ISO 639-1 code")
    live.add_argument("--prompt", help="glossary or context")
    live.add_argument(
        "--url", "--server", dest="server", default=env.server, help="relisten's HTTP(S) or ws(s) URL"
    )
    live.add_argument("--api-key", default=env.api_key)
    live.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for the last turns after the audio ends"
    )
    return parser


def live(args: argparse.Namespace) -> int:
    from relisten.live_client import run

    return run(
        server=args.server,
        api_key=args.api_key,
        file=args.file,
        mic=args.mic,
        speed=args.speed,
        language=args.language,
        prompt=args.prompt,
        timeout_s=args.timeout,
    )


def _replicas(text: str) -> dict[str, int]:
    from relisten.supervisor import parse_replicas

    try:
        return parse_replicas(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


CORRECTIONS_SHOWN = 20
"""Rows of the corrections table after a transcript: an hour-long recording has a hundred or more."""


def _print_corrections(transcript: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    corrections = transcript.get("corrections", [])
    stats = transcript.get("stats", {})
    if corrections:
        table = Table(title="Corrections", show_lines=False)
        for column in ("time", "status", "before", "after", "why"):
            table.add_column(column)
        for item in corrections[:CORRECTIONS_SHOWN]:
            table.add_row(
                f"{item['start']:.1f}-{item['end']:.1f}",
                item["status"],
                item["original_text"],
                item["corrected_text"],
                item["reason"],
            )
        console.print(table)
        if len(corrections) > CORRECTIONS_SHOWN:
            console.print(
                f"... and {len(corrections) - CORRECTIONS_SHOWN} more corrections "
                "(--format json lists every one)"
            )
    console.print(
        f"first pass {stats.get('first_pass_seconds', 0):.1f} s, second pass "
        f"{stats.get('second_pass_seconds', 0):.1f} s over {stats.get('audio_redecoded_seconds', 0):.1f} s "
        f"of audio; {stats.get('words_flagged', 0)} words flagged, "
        f"{stats.get('corrections_accepted', 0)} corrections accepted, "
        f"{stats.get('corrections_rejected', 0)} rejected"
    )


def transcribe(args: argparse.Namespace) -> int:
    import httpx
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from relisten.client import ApiError, RelistenClient

    console = Console(stderr=True)
    client = RelistenClient(args.server, args.api_key)
    try:
        job = client.submit(
            args.file,
            language=args.language,
            task=args.task,
            prompt=args.prompt,
            correction=args.correction,
            confidence_threshold=args.confidence_threshold,
            callback_url=args.callback_url,
        )
        with Progress(
            TextColumn("[bold]{task.fields[status]:<12}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("job", total=1.0, status="queued")

            def show(view: dict[str, Any]) -> None:
                progress.update(task, completed=float(view.get("progress", 0.0)), status=view["status"])

            view = client.wait(job["id"], on_update=show, timeout_s=args.timeout)
        if view["status"] != "completed":
            error = view.get("error") or {}
            console.print(f"[red]job {job['id']} failed: {error.get('code')}: {error.get('message')}")
            return 1
        fmt = FORMATS[args.format]
        body = client.transcript(job["id"], fmt).text
        if fmt == "json":
            body = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
        if args.output:
            args.output.write_text(body, encoding="utf-8")
            console.print(f"wrote {args.output}")
        else:
            sys.stdout.write(body if body.endswith("\n") else body + "\n")
        if fmt != "json":
            _print_corrections(client.transcript(job["id"], "json").json())
        return 0
    except ApiError as exc:
        console.print(f"[red]{exc}")
        return 2
    except (OSError, httpx.HTTPError) as exc:
        console.print(f"[red]cannot reach the server or read the file: {exc}")
        return 2


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "up":
        from relisten.supervisor import run_stack

        if args.nats_cluster < 1:
            raise SystemExit("relisten up: --nats-cluster needs at least 1 node")
        sync = None if args.nats_sync_interval == "default" else args.nats_sync_interval
        raise SystemExit(
            run_stack(
                args.data_dir.resolve(),
                args.port,
                args.nats_port,
                replicas=args.replicas,
                nats_cluster=args.nats_cluster,
                sync_interval=sync,
            )
        )
    if args.command == "worker":
        from relisten.services import run_service

        asyncio.run(run_service(args.service))
        return
    if args.command == "health":
        from relisten.health import check

        raise SystemExit(check(args.service))
    if args.command == "live":
        raise SystemExit(live(args))
    raise SystemExit(transcribe(args))
