"""Every setting is documented in deploy/env.example, and the README opens with the two commands."""

from __future__ import annotations

from pathlib import Path

from collect.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def _env_name(field: str) -> str:
    info = Settings.model_fields[field]
    alias = info.validation_alias
    choices = getattr(alias, "choices", None)
    if choices:
        return str(choices[0])
    return f"COLLECT_{field.upper()}"


def test_every_setting_is_in_env_example() -> None:
    text = (ROOT / "deploy" / "env.example").read_text(encoding="utf-8")
    documented = {
        line.split("=", 1)[0] for line in text.splitlines() if "=" in line and not line.startswith("#")
    }
    missing = {_env_name(f) for f in Settings.model_fields} - documented
    assert not missing, f"deploy/env.example lacks {sorted(missing)}"


def test_readme_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    head = readme[:1200]
    assert "collect demo" in head
    assert "./check" in head
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    # .ci/run must run exactly the README's test command.
    command = 'pip install -e ".[dev]" && ./check'
    assert ci.rstrip().splitlines()[-1] == command
    assert command in head
