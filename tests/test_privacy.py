"""
Phone numbers stay out of the store: after ballots arrive with phone identities (counted,
superseded, refused, conflicting, redelivered), no table but `contact` holds the number or any
run of 7 of its digits, in any column, on either database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from collect.ballot import Identity
from collect.campaign import CampaignSpec
from collect.ingest import ingest
from collect.store import Store
from tests.store.factories import add_contact, add_respondent, at, ballot, campaign_spec, save

PHONES = {
    "roster": "+8613975318642",  # on the roster, with a contact row
    "drawn_out": "+8618602497135",  # on the roster of a draw tier, not drawn
    "public": "+8615866429371",  # off the roster: the open tier
    "stranger": "+8617730586214",  # off the roster of a campaign without an open tier
}
RUN = 7  # a run this long of a number's digits identifies it in practice
_SEPARATORS = re.compile(r"[\s\-().]")


def _runs(phone: str) -> set[str]:
    digits = phone.lstrip("+")
    return {digits[i : i + RUN] for i in range(len(digits) - RUN + 1)}


def _text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _cells(store: Store) -> Iterator[tuple[str, str, str]]:
    """(table, column, text) for every non-null value in every table of the database."""
    with store.engine.connect() as connection:
        inspector = sa.inspect(connection)
        for table in inspector.get_table_names():
            reflected = sa.Table(table, sa.MetaData(), autoload_with=connection)
            for row in connection.execute(sa.select(reflected)).mappings():
                for column, value in row.items():
                    if value is not None:
                        yield table, column, _text(value)


def _leaks(store: Store) -> dict[str, list[tuple[str, str]]]:
    """Where each phone number (or a run of its digits) appears, by table and column."""
    found: dict[str, list[tuple[str, str]]] = {}
    for table, column, text in _cells(store):
        squeezed = _SEPARATORS.sub("", text)
        for name, phone in PHONES.items():
            if any(run in text or run in squeezed for run in _runs(phone)):
                found.setdefault(name, []).append((table, column))
    return found


def test_no_phone_number_outside_contact(branch_store: Store, branch_spec: CampaignSpec) -> None:
    store = branch_store
    spec = campaign_spec(branch_spec, policy="last_counts", open_tier=True)
    closed = campaign_spec(branch_spec)  # no open tier: a stranger's number is refused
    save(store, spec)
    save(store, closed)
    respondent = add_respondent(store, spec, "R1", "leaders", phone=PHONES["roster"])
    add_contact(store, respondent, PHONES["roster"])
    add_respondent(store, spec, "R2", "recipients", phone=PHONES["drawn_out"], in_sample=False)

    raw = {"Body": "A", "From": "<redacted>"}  # adapters redact before ingest(), as they must
    outcomes = []
    for i, (campaign, who, level, minute) in enumerate(
        [
            (spec, "roster", "satisfied", 10),
            (spec, "roster", "dissatisfied", 20),  # last counts: replaces the first
            (spec, "drawn_out", "satisfied", 10),  # kept as invalid: not drawn
            (spec, "public", "satisfied", 10),  # open tier, keyed by the number
            (spec, "public", "great", 10),  # refused: not a level
            (closed, "stranger", "satisfied", 10),  # refused: no roster has this number
        ]
    ):
        item = ballot(
            campaign,
            f"SM{i:032x}",
            Identity("phone", PHONES[who]),
            level=level,
            answered_at=at(minute),
            channel="sms",
            raw=raw,
        )
        outcomes.append(ingest(store, item).outcome)
        ingest(store, item)  # Twilio retries: a redelivery
    # The same reference on another channel is another submission (answered earlier: superseded).
    web = ballot(spec, "SM" + "0" * 32, Identity("phone", PHONES["roster"]), level="dissatisfied")
    outcomes.append(ingest(store, web).outcome)
    conflicting_sms = ballot(
        spec, "SM" + "0" * 32, Identity("phone", PHONES["roster"]), channel="sms", level="fairly_satisfied"
    )
    outcomes.append(ingest(store, conflicting_sms).outcome)
    assert outcomes == [
        "counted",
        "counted",
        "not_counted",
        "counted",
        "rejected",
        "rejected",
        "not_counted",
        "conflict",
    ]

    leaks = _leaks(store)
    # The scan finds a number where it is kept on purpose: it would find a leak too.
    assert leaks.pop("roster") == [("contact", "value")]
    assert leaks == {}
