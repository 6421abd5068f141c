"""The README's flow table is what the step declarations produce (run
``python -m relisten.flow_doc --write`` after changing a step)."""

from __future__ import annotations

from relisten_contracts import flow

from relisten.flow_doc import BEGIN, END, README, current, render, rewrite


def test_readme_flow_table_is_current() -> None:
    readme = README.read_text(encoding="utf-8")
    assert readme.count(BEGIN) == 1 and readme.count(END) == 1
    assert current(readme) == render(), "run: python -m relisten.flow_doc --write"


def test_every_step_and_source_has_its_row() -> None:
    rows = render().splitlines()[2:]
    assert len(rows) == len(flow.STEPS) + len(flow.SOURCES)
    for spec, row in zip(flow.STEPS, rows, strict=False):
        assert row.startswith(f"| {spec.service} | `{spec.durable}`: ")


def test_rewriting_is_idempotent() -> None:
    readme = README.read_text(encoding="utf-8")
    once = rewrite(readme)
    assert rewrite(once) == once
    assert once.replace(current(once), "") == readme.replace(current(readme), "")
