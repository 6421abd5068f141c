"""The README's flow table, generated from the step declarations (:mod:`relisten_contracts.flow`).

One row per step (the durable consumer, what it consumes, what it publishes, when it gives up) and one
per service that publishes outside its steps, between ``<!-- flow:begin -->`` and ``<!-- flow:end -->``
in README.md. ``python -m relisten.flow_doc --write`` rewrites that part; without ``--write`` it prints
the table. A unit test fails when README.md is not what this produces.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from relisten_contracts import Event, flow, subject_for

BEGIN = "<!-- flow:begin -->"
END = "<!-- flow:end -->"
README = Path(__file__).resolve().parents[2] / "README.md"


def _subject(event: type[Event]) -> str:
    return f"`{subject_for(str(event.__struct_config__.tag))}`"


def _gives_up(spec: flow.StepSpec[Event]) -> str:
    if spec.max_deliver == flow.FOREVER:
        return "never (`FOREVER`: retried until it lands)"
    deliveries = "`RELISTEN_MAX_DELIVER`" if spec.max_deliver is None else str(spec.max_deliver)
    return f"`job.failed` after {deliveries} deliveries, or at once on a permanent failure"


def render() -> str:
    """The flow table as Markdown (without the markers)."""
    lines = [
        "| service | step (durable consumer) | consumes | publishes | gives up |",
        "| --- | --- | --- | --- | --- |",
    ]
    for spec in flow.STEPS:
        consumes = "every event (`relisten.>`)" if spec.subject == flow.EVERY_EVENT else f"`{spec.subject}`"
        publishes = ", ".join(_subject(event) for event in spec.publishes) or "nothing"
        lines.append(
            f"| {spec.service} | `{spec.durable}`: {spec.summary} | {consumes} | {publishes} | {_gives_up(spec)} |"
        )
    for service, published in flow.SOURCES.items():
        events = ", ".join(_subject(event) for event in published)
        lines.append(
            f"| {service} | no step: the API (upload, retry, deletion) and the watchdog | "
            f"HTTP requests, JetStream advisories | {events} | — |"
        )
    return "\n".join(lines) + "\n"


def current(readme: str) -> str:
    """What README.md holds between the markers."""
    start = readme.index(BEGIN) + len(BEGIN)
    return readme[start : readme.index(END, start)].strip("\n") + "\n"


def rewrite(readme: str) -> str:
    start = readme.index(BEGIN) + len(BEGIN)
    end = readme.index(END, start)
    return f"{readme[:start]}\n{render()}{readme[end:]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", action="store_true", help="rewrite the table in README.md")
    args = parser.parse_args(argv)
    if not args.write:
        sys.stdout.write(render())
        return 0
    README.write_text(rewrite(README.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
