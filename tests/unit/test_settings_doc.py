"""The README's configuration table is what the settings classes say, and names what they really read."""

from __future__ import annotations

import os

import pytest
from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings

from relisten.settings_doc import BEGIN, END, GROUPS, README, current, own_fields, render, rewrite, variable

MARKER = "zz-marker-zz"


def test_readme_table_is_generated_from_the_settings() -> None:
    readme = README.read_text(encoding="utf-8")
    assert current(readme) == render(), "run: python -m relisten.settings_doc --write"


def test_rewrite_replaces_only_the_marked_section() -> None:
    text = f"before\n{BEGIN}\nstale | table\n{END}\nafter\n"
    rewritten = rewrite(text)
    assert rewritten.startswith("before\n") and rewritten.endswith(f"{END}\nafter\n")
    assert "stale" not in rewritten and "RELISTEN_NATS_URL" in rewritten
    with pytest.raises(ValueError, match="settings:begin"):
        rewrite("no markers here")


def _cases() -> list[tuple[type[BaseSettings], str]]:
    return [(group.settings, name) for group in GROUPS for name in own_fields(group.settings)]


def test_every_setting_is_listed_once_per_class_and_described() -> None:
    table = render()
    for settings, name in _cases():
        info = settings.model_fields[name]
        assert info.description and len(info.description) > 15, (settings.__name__, name)
        assert f"| `{variable(settings, name)}` |" in table


@pytest.mark.parametrize(("settings", "name"), _cases(), ids=lambda v: getattr(v, "__name__", v))
def test_the_documented_variable_is_the_one_read(
    settings: type[BaseSettings], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Set only the documented variable to a marker: the field takes it, or refuses it by name."""

    for key in list(os.environ):
        if key.startswith("RELISTEN_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv(variable(settings, name), MARKER)
    try:
        value = getattr(settings(), name)
    except ValidationError as error:
        assert any(err["loc"] and err["loc"][0] == name for err in error.errors()), error
        return
    values = value if isinstance(value, list) else [value]
    value = [v.get_secret_value() if isinstance(v, SecretStr) else v for v in values]
    assert MARKER in str(value), f"{variable(settings, name)} did not reach {settings.__name__}.{name}"


def test_asr_and_corrector_own_fields_ignore_the_plain_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    from relisten_asr.settings import AsrSettings
    from relisten_corrector.settings import CorrectorSettings

    monkeypatch.setenv("RELISTEN_BEAM_SIZE", "2")
    monkeypatch.setenv("RELISTEN_CORRECTOR_BEAM_SIZE", "3")
    monkeypatch.setenv("RELISTEN_ACK_WAIT_S", "7")
    monkeypatch.setenv("RELISTEN_ASR_ACK_WAIT_S", "9")
    asr, corrector = AsrSettings(), CorrectorSettings()
    assert (asr.beam_size, corrector.beam_size) == (5, 3)
    assert asr.ack_wait_s == corrector.ack_wait_s == 7


def test_service_defaults_are_the_domain_policies_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """One source of truth for the benchmarked values: the pure policies, which the domain tests use."""
    from relisten_clipper.domain import ClipPolicy
    from relisten_clipper.settings import ClipperSettings
    from relisten_merger.domain import MergePolicy
    from relisten_merger.settings import MergerSettings

    for key in list(os.environ):
        if key.startswith("RELISTEN_"):
            monkeypatch.delenv(key)
    assert ClipPolicy(**ClipperSettings().policy_fields()) == ClipPolicy()  # type: ignore[arg-type]
    assert MergePolicy(**MergerSettings().policy_fields()) == MergePolicy()  # type: ignore[arg-type]
    assert (ClipPolicy().cluster_gap_s, ClipPolicy().half_window_s, ClipPolicy().max_redecode_fraction) == (
        1.0,
        0.0,
        0.2,
    )
