"""The README's configuration table, generated from the settings classes.

Every setting is a pydantic-settings field with a description; this module walks the classes (the shared
``CommonSettings``, each service's own, and the ``relisten`` command's), names each field's environment
variable as its class really reads it (``relisten_runtime.settings.env_name``), and renders one table
per class between ``<!-- settings:begin -->`` and ``<!-- settings:end -->`` in README.md.

``python -m relisten.settings_doc --write`` rewrites that part of README.md; without ``--write`` it prints
the tables. A unit test fails when README.md is not what this produces, so the table stays current.

A field may carry ``json_schema_extra={"shown_default": "..."}`` when its default reads better in words
(or is computed on the machine), and ``{"internal": True}`` for a knob that exists for tests and
emergencies, not for tuning.
"""

from __future__ import annotations

import argparse
import re
import sys
import typing
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings
from relisten_asr.settings import AsrSettings
from relisten_clipper.settings import ClipperSettings
from relisten_corrector.settings import CorrectorSettings
from relisten_ingest.settings import IngestSettings
from relisten_merger.settings import MergerSettings
from relisten_notifier.settings import NotifierSettings
from relisten_runtime.settings import CommonSettings, env_name

from relisten.command_settings import CommandSettings

BEGIN = "<!-- settings:begin -->"
END = "<!-- settings:end -->"
README = Path(__file__).resolve().parents[2] / "README.md"


@dataclass(frozen=True)
class Group:
    """One table: a settings class and the fields of it that the table lists."""

    title: str
    settings: type[BaseSettings]


GROUPS = (
    Group("Every service", CommonSettings),
    Group("ingest", IngestSettings),
    Group("asr", AsrSettings),
    Group("clipper", ClipperSettings),
    Group("corrector", CorrectorSettings),
    Group("merger", MergerSettings),
    Group("notifier", NotifierSettings),
    Group("the `relisten` command", CommandSettings),
)


@dataclass(frozen=True)
class Row:
    variable: str
    default: str
    meaning: str


def own_fields(settings: type[BaseSettings]) -> dict[str, FieldInfo]:
    """The fields ``settings`` adds to the shared ones (all of them for the shared class itself)."""
    if settings is CommonSettings or not issubclass(settings, CommonSettings):
        return dict(settings.model_fields)
    return {name: f for name, f in settings.model_fields.items() if name not in CommonSettings.model_fields}


def variable(settings: type[BaseSettings], name: str) -> str:
    """The environment variable ``settings`` reads field ``name`` from."""
    if issubclass(settings, CommonSettings):
        return env_name(settings, name)
    prefix = settings.model_config.get("env_prefix") or ""
    return f"{prefix}{name}".upper()


def _extra(info: FieldInfo) -> dict[str, Any]:
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def show_default(info: FieldInfo) -> str:
    """The default as a person would write it in the environment."""
    shown = _extra(info).get("shown_default")
    if isinstance(shown, str):
        return shown
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
        if not value:
            return "unset"
        raise ValueError("a computed default needs a shown_default")
    value = info.default
    if value is None or value == "":
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int | float):
        return f"`{_number(value)}`"
    if isinstance(value, tuple | list):
        return "`" + ",".join(_number(v) if isinstance(v, int | float) else str(v) for v in value) + "`"
    if isinstance(value, Enum):
        value = value.value
    return f"`{value}`"


def _choices(info: FieldInfo) -> list[str]:
    annotation = info.annotation
    if typing.get_origin(annotation) is typing.Literal:
        return [str(choice) for choice in typing.get_args(annotation)]
    return []


def _text(description: str) -> str:
    # Docstring-style ``code`` becomes Markdown `code`; a pipe would end the table cell.
    return description.replace("``", "`").replace("|", "\\|").strip()


def meaning(info: FieldInfo) -> str:
    if not info.description:
        raise ValueError("every setting needs a description")
    text = _text(info.description)
    choices = _choices(info)
    if choices:
        text += " One of " + ", ".join(f"`{choice}`" for choice in choices) + "."
    if _extra(info).get("internal"):
        text = "*Internal (for tests and emergencies):* " + text
    return text


def rows(settings: type[BaseSettings]) -> list[Row]:
    return [
        Row(variable(settings, name), show_default(info), meaning(info))
        for name, info in own_fields(settings).items()
    ]


def render() -> str:
    """The Markdown that goes between the markers (without them)."""
    parts: list[str] = []
    for group in GROUPS:
        parts.append(f"#### {group.title}\n")
        parts.append("| variable | default | meaning |\n| --- | --- | --- |")
        parts.extend(f"| `{row.variable}` | {row.default} | {row.meaning} |" for row in rows(group.settings))
        parts.append("")
    return "\n".join(parts)


_SECTION = re.compile(re.escape(BEGIN) + r"\n.*?" + re.escape(END), re.S)


def current(readme: str) -> str:
    """What README.md has between the markers today."""
    found = _SECTION.search(readme)
    if found is None:
        raise ValueError(f"README.md has no {BEGIN} ... {END} section")
    return found.group(0)[len(BEGIN) + 1 : -len(END)]


def rewrite(readme: str) -> str:
    current(readme)  # the markers must be there
    return _SECTION.sub(lambda _: f"{BEGIN}\n{render()}{END}", readme, count=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m relisten.settings_doc", description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite README.md's configuration table")
    args = parser.parse_args(argv)
    if args.write:
        README.write_text(rewrite(README.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
