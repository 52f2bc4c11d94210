"""
ingest_stream() (the set-based import path) against ingest_batch() (the reference, item by item).

Two stores get the same campaign, respondents and earlier single ingests, then the same stream:
one through ingest_batch(), one through ingest_stream() in small chunks. Their submission, ballot
and answer tables (ids and receipt codes aside) and their receipts must be the same.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collect.ballot import Answer, BallotSubmission, Identity, Problem, Receipt, Rejection
from collect.campaign import CampaignSpec, Channel
from collect.dedupe.keys import new_receipts
from collect.ingest import Displaced, Item, ingest, ingest_batch, ingest_stream
from collect.store import Store
from collect.store.migrate import upgrade
from tests.conftest import PG_ADMIN_DSN, make_settings
from tests.store.factories import (
    AFTER_CLOSE,
    BEFORE_OPEN,
    RECEIVED,
    add_respondent,
    at,
    ballot,
    campaign_spec,
    issue_token,
    save,
    store_tables,
)

PHONE_R1 = "+8613975318642"
PHONE_OFF_ROSTER = "+8615866429371"
UNITS = ("S01", "S02")
CHANNELS: tuple[Channel, ...] = ("web", "sms", "phone", "paper")


@pytest.fixture
def twin(store: Store, tmp_path: Path) -> Iterator[Store]:
    """A second empty store on the same kind of database as `store`: the reference side."""
    if store.settings.is_sqlite:
        url = f"sqlite:///{tmp_path / 'reference.db'}"
        upgrade(url)
        twin = Store(make_settings(url))
        yield twin
        twin.dispose()
        return
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    upgrade(url)
    twin = Store(make_settings(url))
    try:
        yield twin
    finally:
        twin.dispose()
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def set_up(stores: tuple[Store, ...], base: CampaignSpec, policy: str) -> tuple[CampaignSpec, dict[str, str]]:
    """The same fresh campaign and roster in every store; returns the spec and the tokens by name."""
    spec = campaign_spec(base, policy=policy, open_tier=True)
    tokens: dict[str, str] = {}
    for store in stores:
        save(store, spec)
        r1 = add_respondent(store, spec, "R1", "leaders", phone=PHONE_R1)
        r2 = add_respondent(store, spec, "R2", "supervisors")
        add_respondent(store, spec, "R3", "recipients", in_sample=False)
        r4 = add_respondent(store, spec, "R4", "peers", own_unit="S01")
        # Tokens are random per store: the same name must carry the same token to both.
        if not tokens:
            tokens = {
                "T-R2": issue_token(store, spec, r2),
                "T-R4-revoked": issue_token(store, spec, r4, revoked=True),
            }
            tokens["T-R1"] = issue_token(store, spec, r1)
        else:
            _copy_invitations(stores[0], store, spec, {"T-R2": r2, "T-R4-revoked": r4, "T-R1": r1})
    return spec, tokens


def _copy_invitations(source: Store, target: Store, spec: CampaignSpec, respondents: dict[str, int]) -> None:
    """Give `target` the invitations `source` has for the campaign (same tokens, its own respondent ids)."""
    invitation = sa.table(
        "invitation",
        sa.column("campaign_id"),
        sa.column("respondent_id"),
        sa.column("nonce"),
        sa.column("token_sha256"),
        sa.column("created_at"),
        sa.column("revoked_at"),
    )
    campaign = sa.table("campaign", sa.column("id"), sa.column("code"))
    with source.engine.connect() as connection:
        source_id = connection.execute(
            sa.select(campaign.c.id).where(campaign.c.code == spec.code)
        ).scalar_one()
        rows = connection.execute(
            sa.select(invitation)
            .where(invitation.c.campaign_id == source_id)
            .order_by(invitation.c.respondent_id)
        ).all()
    with target.engine.begin() as connection:
        target_id = connection.execute(
            sa.select(campaign.c.id).where(campaign.c.code == spec.code)
        ).scalar_one()
        # Issued in the order T-R2, T-R4-revoked, T-R1: respondent ids R1 < R2 < R4 in both stores.
        by_old_respondent = sorted(rows, key=lambda r: r.respondent_id)
        new_ids = [respondents["T-R1"], respondents["T-R2"], respondents["T-R4-revoked"]]
        for row, respondent_id in zip(by_old_respondent, new_ids, strict=True):
            connection.execute(
                sa.insert(invitation).values(
                    campaign_id=target_id,
                    respondent_id=respondent_id,
                    nonce=row.nonce,
                    token_sha256=row.token_sha256,
                    created_at=row.created_at,
                    revoked_at=row.revoked_at,
                )
            )


# -- the items ----------------------------------------------------------------------------------

VOTERS: tuple[tuple[str, str | None], ...] = (
    ("roster_id", "R1"),
    ("phone", PHONE_R1),  # R1 again, by the number on the roster
    ("token", "T-R1"),  # and again, by a ballot link
    ("roster_id", "R2"),
    ("token", "T-R2"),
    ("roster_id", "R3"),  # not sampled: invalid
    ("roster_id", "R4"),  # may not rate S01
    ("token", "T-R4-revoked"),
    ("roster_id", "R9"),  # on no roster
    ("phone", PHONE_OFF_ROSTER),  # the open tier
    ("transaction", "ticket-1"),
    ("transaction", "ticket-2"),
    ("none", None),  # an anonymous device rating: a transaction of its own
)


@dataclasses.dataclass(frozen=True)
class Draft:
    """An item before the campaign code and tokens are known (Hypothesis draws these)."""

    kind: str  # ballot | rejection | unknown_campaign | again
    ref: int
    channel: Channel
    voter: int = 0
    units: tuple[str, ...] = ("S01",)
    level: str = "satisfied"
    minute: int = 0
    when: str = "inside"
    review: str | None = None
    again: int = 0  # for "again": which earlier item is delivered once more
    later: int = 0


ballot_drafts = st.builds(
    Draft,
    kind=st.just("ballot"),
    ref=st.integers(0, 12),
    channel=st.sampled_from(CHANNELS),
    voter=st.integers(0, len(VOTERS) - 1),
    units=st.sampled_from([("S01",)] * 3 + [("S02",), ("S01", "S02"), ("S01", "Z99")]),
    level=st.sampled_from(["satisfied"] * 4 + ["dissatisfied"] * 3 + ["great"]),
    minute=st.integers(0, 4).map(lambda m: m * 10),  # few values: ties happen
    when=st.sampled_from(["inside"] * 12 + ["before", "after"]),
    review=st.sampled_from([None] * 9 + ["burst"]),
)
drafts = st.one_of(
    # Mostly ballots (one_of draws its branches evenly), so they meet in the same slots.
    *[ballot_drafts] * 6,
    st.builds(Draft, kind=st.just("rejection"), ref=st.integers(0, 12), channel=st.just("phone")),
    st.builds(Draft, kind=st.just("unknown_campaign"), ref=st.integers(0, 3), channel=st.just("web")),
    st.builds(
        Draft,
        kind=st.just("again"),
        ref=st.just(0),
        channel=st.just("web"),
        again=st.integers(0, 1000),
        later=st.integers(0, 3),
    ),
)


def realise(
    drafted: list[Draft], spec: CampaignSpec, tokens: dict[str, str], pool: tuple[int, ...] = ()
) -> list[Item]:
    """
    The items of the drafts. `pool`: the voters (indexes into VOTERS) of the example; a few
    voters make their ballots meet in the same slots often.
    """
    pool = pool or tuple(range(len(VOTERS)))
    items: list[Item] = []
    for draft in drafted:
        if draft.kind == "again":
            if items:
                # Same content, delivered again later: a redelivery (or a conflict, if the
                # reference was taken since by other content).
                earlier = items[draft.again % len(items)]
                items.append(
                    dataclasses.replace(earlier, received_at=RECEIVED + timedelta(hours=draft.later))
                )
            continue
        ref = f"{draft.channel}-{draft.ref}"
        if draft.kind == "rejection":
            problems = (Problem("phone", "invalid_phone", f"row {draft.ref}: not a phone number"),)
            items.append(Rejection(spec.code, "phone", ref, problems, RECEIVED, raw={"row": str(draft.ref)}))
            continue
        if draft.kind == "unknown_campaign":
            items.append(ballot(spec, ref, Identity("roster_id", "R1")))
            items[-1] = dataclasses.replace(items[-1], campaign=gone(spec))
            continue
        kind, value = VOTERS[pool[draft.voter % len(pool)]]
        identity = None
        if kind == "token":
            identity = Identity("token", tokens[str(value)])
        elif kind != "none":
            identity = Identity(kind, str(value))  # type: ignore[arg-type]
        answered_at = {"inside": at(draft.minute), "before": BEFORE_OPEN, "after": AFTER_CLOSE}[draft.when]
        items.append(
            BallotSubmission(
                campaign=spec.code,
                channel=draft.channel,
                source_ref=ref,
                identity=identity,
                answers=tuple(Answer(u, "overall", draft.level) for u in draft.units),
                answered_at=answered_at,
                received_at=RECEIVED,
                review=draft.review,
                meta={"draft": draft.ref},
            )
        )
    return items


def gone(spec: CampaignSpec) -> str:
    """A campaign code no store knows, unique to the example."""
    return f"{spec.code}-gone"


# -- comparing ----------------------------------------------------------------------------------


def receipt_view(
    receipt: Receipt, names: dict[int, tuple[Any, ...]], codes: dict[int, str]
) -> tuple[Any, ...]:
    """A receipt without ids and codes; checks that its code is its submission's."""
    assert receipt.code == codes[receipt.submission_id]
    return (
        receipt.outcome,
        names[receipt.submission_id],
        receipt.units,
        tuple(_problem(p.as_dict(), names) for p in receipt.problems),
        receipt.reason,
    )


def _problem(problem: dict[str, str], names: dict[int, tuple[Any, ...]]) -> tuple[str, ...]:
    # A conflict names the submission it conflicts with by id: compare what that submission is.
    detail = re.sub(
        r"\(submission (\d+)\)", lambda m: f"(submission {names[int(m.group(1))]})", problem["detail"]
    )
    return (problem["field"], problem["code"], detail)


def run_both(
    reference: Store, bulk: Store, spec: CampaignSpec, earlier: list[Item], items: list[Item], chunk: int
) -> None:
    for item in earlier:
        ingest(reference, item)
        ingest(bulk, item)
    expected = ingest_batch(reference, items)
    got: list[tuple[Item, Receipt]] = []
    taken = ingest_stream(bulk, items, lambda item, receipt: got.append((item, receipt)), chunk=chunk)
    assert taken == len(items)
    assert [item for item, _r in got] == items

    want_tables, want_names, want_codes = store_tables(reference, spec.code, gone(spec))
    got_tables, got_names, got_codes = store_tables(bulk, spec.code, gone(spec))
    normalise = {
        "submission": lambda rows, names: sorted(
            (*r[:-1], tuple(_problem(p, names) for p in r[-1] or [])) for r in rows
        ),
    }
    for table in ("submission", "ballot", "answer"):
        want, have = want_tables[table], got_tables[table]
        if table in normalise:
            want, have = normalise[table](want, want_names), normalise[table](have, got_names)
        assert have == want, table
    assert [receipt_view(r, got_names, got_codes) for _i, r in got] == [
        receipt_view(r, want_names, want_codes) for r in expected
    ]


# -- the tests ----------------------------------------------------------------------------------


@pytest.mark.slow
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    policy=st.sampled_from(["first_counts", "last_counts"]),
    earlier=st.lists(drafts, max_size=6),
    drafted=st.lists(drafts, min_size=8, max_size=40),
    chunk=st.integers(1, 7),
    # A few voters per example, drawn evenly (integers would mostly give the first ones).
    pool=st.permutations(range(len(VOTERS))).flatmap(lambda p: st.integers(1, 3).map(lambda n: tuple(p[:n]))),
)
def test_the_stream_leaves_the_store_as_ingest_batch_does(
    store: Store,
    twin: Store,
    branch_spec: CampaignSpec,
    policy: str,
    earlier: list[Draft],
    drafted: list[Draft],
    chunk: int,
    pool: tuple[int, ...],
) -> None:
    spec, tokens = set_up((twin, store), branch_spec, policy)
    before = realise(earlier, spec, tokens, pool)
    # The stream reuses references of the earlier items, so it redelivers and conflicts with them.
    run_both(twin, store, spec, before, realise(drafted, spec, tokens, pool), chunk)


@pytest.mark.parametrize("policy", ["first_counts", "last_counts"])
def test_many_items_for_one_slot_in_one_chunk(
    store: Store, twin: Store, branch_spec: CampaignSpec, policy: str
) -> None:
    spec, _tokens = set_up((twin, store), branch_spec, policy)
    minutes = [30, 10, 40, 10, 0, 40, 20]
    items: list[Item] = [
        ballot(spec, f"call-{n}", Identity("phone", PHONE_OFF_ROSTER), answered_at=at(m), channel="phone")
        for n, m in enumerate(minutes)
    ]
    items += [dataclasses.replace(items[2], received_at=RECEIVED + timedelta(hours=1)), items[0]]
    items.append(
        ballot(spec, "call-1", Identity("phone", PHONE_OFF_ROSTER), answered_at=at(50), channel="phone")
    )
    run_both(twin, store, spec, [], items, chunk=100)


def test_earlier_bulk_items_displace_counted_ballots_of_single_ingests(
    store: Store, twin: Store, branch_spec: CampaignSpec
) -> None:
    spec, _tokens = set_up((twin, store), branch_spec, "first_counts")
    web: list[Item] = [
        ballot(spec, "web-1", Identity("phone", PHONE_R1), units=("S01", "S02"), answered_at=at(30)),
        ballot(spec, "web-2", Identity("phone", PHONE_OFF_ROSTER), answered_at=at(30)),
        ballot(spec, "web-3", Identity("transaction", "ticket-9"), answered_at=at(30)),
    ]
    calls: list[Item] = [
        ballot(spec, "c1", Identity("roster_id", "R1"), answered_at=at(10), channel="phone"),  # displaces S01
        ballot(spec, "c2", Identity("phone", PHONE_OFF_ROSTER), answered_at=at(40), channel="phone"),  # loses
        ballot(spec, "c3", Identity("transaction", "ticket-9"), answered_at=at(0), channel="phone"),
        web[0],  # a redelivery: S01 is no longer counted, S02 still is
    ]
    run_both(twin, store, spec, web, calls, chunk=2)

    # The displaced ballots are reported, as what they became.
    spec2, _ = set_up((store,), branch_spec, "first_counts")
    receipts = [ingest(store, dataclasses.replace(w, campaign=spec2.code)) for w in web]
    events: list[Displaced] = []
    ingest_stream(
        store,
        [dataclasses.replace(c, campaign=spec2.code) for c in calls],
        lambda _i, _r: None,
        chunk=2,
        on_displaced=events.append,
    )
    assert events == [
        Displaced(receipts[0].submission_id, "S01", "superseded", "earlier_answer_counts"),
        Displaced(receipts[2].submission_id, "S01", "duplicate", "transaction_already_rated"),
    ]


def test_a_failing_stream_leaves_nothing(store: Store, branch_spec: CampaignSpec) -> None:
    spec, _tokens = set_up((store,), branch_spec, "first_counts")
    seen: list[Receipt] = []

    def items() -> Iterator[Item]:
        for n in range(7):
            yield ballot(spec, f"c{n}", Identity("transaction", f"t{n}"), channel="phone")
        raise OSError("the export broke off")

    with pytest.raises(OSError, match="broke off"):
        ingest_stream(store, items(), lambda _i, r: seen.append(r), chunk=3)
    assert len(seen) == 6  # two chunks were written, then rolled back with the rest
    tables, _names, _codes = store_tables(store, spec.code)
    assert tables == {"submission": [], "ballot": [], "answer": []}


def test_receipts_flow_while_the_stream_is_read(store: Store, branch_spec: CampaignSpec) -> None:
    spec, _tokens = set_up((store,), branch_spec, "first_counts")
    seen: list[Receipt] = []
    behind: list[int] = []

    def items() -> Iterator[Item]:
        for n in range(10):
            behind.append(n - len(seen))  # items handed out but not yet answered
            yield ballot(spec, f"c{n}", Identity("transaction", f"t{n}"), channel="phone")

    ingest_stream(store, items(), lambda _i, r: seen.append(r), chunk=4)
    assert max(behind) <= 4
    assert [r.outcome for r in seen] == ["counted"] * 10


def test_bulk_receipt_codes_look_like_single_ones() -> None:
    codes = new_receipts(2000)
    assert len(set(codes)) == 2000
    assert all(re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}", c) for c in codes)
    assert new_receipts(0) == []
