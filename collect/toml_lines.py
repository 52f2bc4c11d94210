"""
Find the line of a key path (`tiers[2].weight`) in TOML text, for error messages.

tomllib keeps no positions, so this walks the text: table headers (`[a]`, `[[a]]`) and
`key = value` lines. Inline tables and multi-line values are found by their first line.
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_ASSIGN = re.compile(r"^\s*([A-Za-z0-9_\-\"'.]+)\s*=")
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _split(path: str) -> list[str | int]:
    return [int(idx) if idx else name for name, idx in _PATH_PART.findall(path)]


def _key_positions(text: str) -> dict[tuple[str | int, ...], int]:
    """Map each key path seen in the text to its 1-based line number."""
    positions: dict[tuple[str | int, ...], int] = {}
    counters: dict[tuple[str | int, ...], int] = {}
    current: tuple[str | int, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            names: list[str | int] = []
            for part in header.group(2).split("."):
                names.append(part.strip().strip("\"'"))
                # An array-of-tables name inside the prefix refers to its latest element.
                prefix = tuple(names)
                if prefix in counters and len(names) < len(header.group(2).split(".")):
                    names.append(counters[prefix])
            key = tuple(names)
            if header.group(1) == "[[":
                counters[key] = counters.get(key, -1) + 1
                current = (*key, counters[key])
            else:
                current = key
            positions.setdefault(current, number)
            positions.setdefault(key, number)
            continue
        assign = _ASSIGN.match(line)
        if assign:
            dotted = tuple(p.strip().strip("\"'") for p in assign.group(1).split("."))
            positions.setdefault((*current, *dotted), number)
    return positions


def line_of(text: str, path: str) -> int | None:
    """The line where `path` (or its nearest enclosing key) is written, or None if nowhere."""
    positions = _key_positions(text)
    parts = tuple(_split(path))
    while parts:
        if parts in positions:
            return positions[parts]
        parts = parts[:-1]
    return None
