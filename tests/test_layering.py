"""
Imports point one way (style.md): adapters never touch the store, aggregate only reads it,
and only collect.ingest writes ballots. Checked on the source with `ast`, so a shortcut fails CI.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("collect/channels"), ids=lambda p: p.name)
def test_channel_adapters_never_touch_the_store(path: Path) -> None:
    forbidden = {
        m
        for m in _imports(path)
        if m.startswith(("collect.store", "collect.ingest", "collect.web", "sqlalchemy", "sqlmodel"))
    }
    assert not forbidden, (
        f"{path.relative_to(ROOT)} imports {sorted(forbidden)}: adapters translate, ingest() writes"
    )


@pytest.mark.parametrize("path", _modules("aggregate"), ids=lambda p: p.name)
def test_aggregate_only_reads(path: Path) -> None:
    forbidden = {
        m for m in _imports(path) if m.startswith(("collect.ingest", "collect.channels", "collect.web"))
    }
    assert not forbidden, (
        f"{path.relative_to(ROOT)} imports {sorted(forbidden)}: aggregate reads the store only"
    )


def test_only_ingest_inserts_ballots() -> None:
    """No module but collect/ingest.py (and review decisions) inserts into the ballot table."""
    allowed = {ROOT / "collect/ingest.py", ROOT / "collect/dedupe/review.py"}
    offenders = []
    for path in _modules("collect"):
        if path in allowed or "migrations" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        if "insert(BALLOT)" in text or "insert(ANSWER)" in text or "INSERT INTO ballot" in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"these write ballots outside ingest(): {offenders}"
