"""
Every reason a ballot or a paper form can be held or set aside for reads as words in
`collect report`: found in the code where the reasons are made, so a new one without a label
fails here rather than showing up as a bare code in front of an auditor.
"""

from __future__ import annotations

import re
from pathlib import Path

from collect.dedupe.report import LABELS, headline

ROOT = Path(__file__).resolve().parents[2] / "collect"

# Where reasons are made, and how: `reason="…"`, `review="…"`, `rejected("…"`, constants named
# *REASON, and the reasons of the one-vote rule in ingest._loser.
PATTERNS = (
    re.compile(r'\breason="([a-z_]+)"'),
    re.compile(r'\breview="([a-z_]+)"'),
    re.compile(r'\brejected\(\s*"([a-z_]+)"'),
    re.compile(r'^[A-Z_]*REASON = "([a-z_]+)"', re.M),
    re.compile(r'return "(?:superseded|duplicate)", "([a-z_]+)"'),
    re.compile(r'"serial_mistyped" if status == "mistyped" else "(signature_mistyped)"'),
    re.compile(r'reason = "(serial_mistyped)"'),
)
SOURCES = (
    "ingest.py",
    "paper/entry.py",
    "paper/scans.py",
    "dedupe/clusters.py",
    "web/window.py",
    "dedupe/sampling.py",
)


def reasons_in_code() -> set[str]:
    found: set[str] = set()
    for name in SOURCES:
        text = (ROOT / name).read_text(encoding="utf-8")
        for pattern in PATTERNS:
            found.update(pattern.findall(text))
    return found


def test_every_reason_made_in_the_code_has_a_label() -> None:
    found = reasons_in_code()
    # The scan must see the reasons it exists for, or it proves nothing.
    assert {"serial_reused", "serial_unknown", "signature_mismatch", "identical_answers"} <= found
    assert {"earlier_answer_counts", "later_answer_counts", "transaction_already_rated"} <= found
    assert sorted(found - set(LABELS)) == []


def test_the_headline_speaks_in_labels() -> None:
    counts = {
        "received": 11_436,
        "valid": 10_834,
        "pending_review": 0,
        "invalid": 602,
        "invalid_by_reason": {"serial_reused": 590, "serial_unknown": 12},
    }
    assert headline(counts) == (
        "11,436 received, 10,834 valid, 602 invalid "
        "(photocopies: serial used again 590, forged: serial never issued 12)"
    )
