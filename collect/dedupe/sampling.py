"""
Reproducible sample draws from a tier's roster (sampling frame).

Every random choice is a SHA-256 of the seed and a label, so an auditor can redo a draw from
the roster file, the method, its parameters and the seed alone: docs/sampling.md gives the
algorithm and a reference snippet that tests/dedupe/test_sampling.py runs against this module.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from collect.store import Store
from collect.store.campaigns import load_campaign
from collect.store.tables import (
    AUDIT,
    BALLOT,
    CONTACT,
    RESPONDENT,
    SAMPLE_DRAW,
    SAMPLE_MEMBER,
    utcnow,
)

Method = Literal["simple", "systematic", "stratified", "pps"]
METHODS: tuple[Method, ...] = ("simple", "systematic", "stratified", "pps")

# Every uniform number is a 256-bit SHA-256 read as an integer, divided by this.
_M = 2**256


class SamplingError(ValueError):
    """A draw that cannot be made as asked (the message says why); nothing is written."""


@dataclass(frozen=True, slots=True)
class FrameRow:
    """One roster row as the draw sees it: the stratum and size are the roster's own text."""

    roster_id: str
    stratum: str = ""
    size: str = ""


@dataclass(frozen=True, slots=True)
class Picked:
    roster_id: str
    stratum: str | None


# --- the algorithm (pure; docs/sampling.md restates it for auditors) ---------------------


def frame_sha256(rows: Sequence[FrameRow]) -> str:
    """SHA-256 of `roster_id TAB stratum TAB size LF` per row, rows sorted by roster id."""
    digest = hashlib.sha256()
    for row in sorted(rows, key=lambda r: r.roster_id):
        digest.update(f"{row.roster_id}\t{row.stratum}\t{row.size}\n".encode())
    return digest.hexdigest()


def rank_key(seed: str, roster_id: str) -> str:
    """A row's place in the random order of a draw: the hex SHA-256 of `seed|roster_id`."""
    return hashlib.sha256(f"{seed}|{roster_id}".encode()).hexdigest()


def random_start(seed: str) -> int:
    """U in [0, 2**256): the random start of systematic and PPS draws is U / 2**256 of an interval."""
    return int(hashlib.sha256(f"{seed}|#start".encode()).hexdigest(), 16)


def _in_random_order(rows: Sequence[FrameRow], seed: str) -> list[FrameRow]:
    # The roster id breaks a (practically impossible) hash tie, so the order is total.
    return sorted(rows, key=lambda r: (rank_key(seed, r.roster_id), r.roster_id))


def _listing_order(rows: Sequence[FrameRow]) -> list[FrameRow]:
    # Systematic and PPS walk a list; sorting by stratum first spreads the sample over strata
    # (implicit stratification, 分层系统抽样). Code-point order = UTF-8 byte order = `LC_ALL=C sort`.
    return sorted(rows, key=lambda r: (r.stratum, r.roster_id))


def draw_simple(rows: Sequence[FrameRow], n: int, seed: str) -> list[FrameRow]:
    return _in_random_order(rows, seed)[:n]


def draw_systematic(rows: Sequence[FrameRow], n: int, seed: str) -> list[FrameRow]:
    """Every (N/n)-th row from a random start; exact integer arithmetic, no floats."""
    listing = _listing_order(rows)
    big_n, start = len(listing), random_start(seed)
    # position_i = floor((U/M + i) * N/n), computed as one integer division.
    return [listing[(big_n * (start + i * _M)) // (_M * n)] for i in range(n)]


def parse_size(text: str, roster_id: str) -> Fraction:
    try:
        value = Fraction(text.strip().replace(",", ""))
    except (ValueError, ZeroDivisionError):
        raise SamplingError(f"size {text!r} of roster id {roster_id!r} is not a number") from None
    if value < 0:
        raise SamplingError(f"size {text!r} of roster id {roster_id!r} is negative")
    return value


def draw_pps(rows: Sequence[FrameRow], n: int, seed: str) -> list[FrameRow]:
    """
    Systematic PPS on cumulative sizes. A row at least as large as the interval (total / n)
    would be hit more than once: it is taken with certainty and the interval recomputed over
    the rest, until no such row is left; then one systematic pass with a random start.
    """
    listing = _listing_order(rows)
    sizes = [parse_size(r.size, r.roster_id) for r in listing]
    remaining = list(range(len(listing)))
    chosen: set[int] = set()
    left = n
    while left > 0:
        total = sum((sizes[j] for j in remaining), Fraction(0))
        certain = [j for j in remaining if sizes[j] * left >= total and sizes[j] > 0]
        if not certain:
            break
        chosen.update(certain)
        remaining = [j for j in remaining if j not in chosen]
        left = n - len(chosen)
    if left < 0:
        raise SamplingError(f"{len(chosen)} rows are certain to be drawn, more than the size {n}")
    if left > 0:
        total = sum((sizes[j] for j in remaining), Fraction(0))
        if total == 0 or sum(1 for j in remaining if sizes[j] > 0) < left:
            raise SamplingError(f"too few rows with a positive size to draw {n}")
        start, step = Fraction(random_start(seed), _M), total / left
        cumulative, point = Fraction(0), 0
        for j in remaining:
            cumulative += sizes[j]
            # A row is drawn when the next point (start + point) * step falls inside its span.
            if point < left and (start + point) * step < cumulative:
                chosen.add(j)
                point += 1
    return [listing[j] for j in sorted(chosen)]


def allocate_proportional(counts: Mapping[str, int], n: int) -> dict[str, int]:
    """Largest remainder: floor(n·N_h/N) each, the rest one by one to the largest remainders."""
    total = sum(counts.values())
    shares = {h: n * c // total for h, c in counts.items()}
    rest = n - sum(shares.values())
    by_remainder = sorted(counts, key=lambda h: (-(n * counts[h] % total), h))
    for h in by_remainder[:rest]:
        shares[h] += 1
    return shares


def draw_stratified(
    rows: Sequence[FrameRow], n: int, seed: str, allocation: Mapping[str, int] | None
) -> list[FrameRow]:
    """Simple random within each stratum, by a fixed or proportional allocation."""
    counts = Counter(r.stratum for r in rows)
    wanted = dict(allocation) if allocation is not None else allocate_proportional(counts, n)
    picked: list[FrameRow] = []
    for stratum in sorted(wanted):
        members = [r for r in rows if r.stratum == stratum]
        picked.extend(draw_simple(members, wanted[stratum], seed))
    return picked


def replacements(
    rows: Sequence[FrameRow],
    ever_drawn: set[str],
    unreachable: Sequence[FrameRow],
    seed: str,
    *,
    same_stratum: bool,
) -> list[tuple[FrameRow, FrameRow]]:
    """
    For each unreachable respondent (in roster-id order), the first row in the random order of
    `seed` that was never drawn for the tier (of the same stratum for stratified draws).
    """
    pool = [r for r in _in_random_order(rows, seed) if r.roster_id not in ever_drawn]
    taken: set[str] = set()
    pairs: list[tuple[FrameRow, FrameRow]] = []
    for gone in sorted(unreachable, key=lambda r: r.roster_id):
        match = next(
            (r for r in pool if r.roster_id not in taken and (not same_stratum or r.stratum == gone.stratum)),
            None,
        )
        if match is None:
            where = f" in stratum {gone.stratum!r}" if same_stratum else ""
            raise SamplingError(f"no respondent left{where} to replace an unreachable one")
        taken.add(match.roster_id)
        pairs.append((gone, match))
    return pairs


def run_method(
    rows: Sequence[FrameRow],
    method: Method,
    n: int,
    seed: str,
    allocation: Mapping[str, int] | None = None,
) -> list[FrameRow]:
    """Check the request against the frame, then draw."""
    if n < 1:
        raise SamplingError("the sample size must be at least 1")
    if n > len(rows):
        raise SamplingError(f"cannot draw {n} from a frame of {len(rows)}")
    if method == "simple":
        return draw_simple(rows, n, seed)
    if method == "systematic":
        return draw_systematic(rows, n, seed)
    if method == "pps":
        return draw_pps(rows, n, seed)
    if allocation is not None:
        counts = Counter(r.stratum for r in rows)
        problems = [
            f"stratum {h!r}: {k} wanted, {counts.get(h, 0)} on the roster"
            for h, k in sorted(allocation.items())
            if k > counts.get(h, 0) or k < 0
        ]
        if problems:
            raise SamplingError("allocation does not fit the frame: " + "; ".join(problems))
        if sum(allocation.values()) != n:
            raise SamplingError(f"the allocation adds up to {sum(allocation.values())}, not the size {n}")
    return draw_stratified(rows, n, seed, allocation)


# --- the store side ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DrawResult:
    draw_id: int
    new: bool  # False: the same draw was already recorded (same frame, method, params, seed)
    kind: str
    method: str
    seed: str
    frame_sha256: str
    frame_size: int
    picked: tuple[Picked, ...]
    replaced: int = 0  # replacement draws: how many unreachable respondents were replaced


def _frame(
    connection: Connection, campaign_id: int, tier: str, strata: str | None, size_column: str | None
) -> tuple[list[FrameRow], dict[str, int]]:
    """The tier's roster as FrameRows, and respondent id by roster id."""
    rows = connection.execute(
        sa.select(RESPONDENT.c.id, RESPONDENT.c.attributes, CONTACT.c.value)
        .join(CONTACT, sa.and_(CONTACT.c.respondent_id == RESPONDENT.c.id, CONTACT.c.kind == "roster_id"))
        .where(RESPONDENT.c.campaign_id == campaign_id, RESPONDENT.c.tier_code == tier)
    ).all()
    frame: list[FrameRow] = []
    ids: dict[str, int] = {}
    missing: Counter[str] = Counter()
    for row in rows:
        attributes: dict[str, Any] = row.attributes or {}
        stratum = str(attributes.get(strata, "")) if strata else ""
        size = str(attributes.get(size_column, "")) if size_column else ""
        if strata and not stratum:
            missing[strata] += 1
        if size_column and not size:
            missing[size_column] += 1
        frame.append(FrameRow(row.value, stratum, size))
        ids[row.value] = int(row.id)
    if missing:
        raise SamplingError(
            "roster rows without a value: "
            + ", ".join(f"column {c!r} empty in {k} row(s)" for c, k in sorted(missing.items()))
        )
    if not frame:
        raise SamplingError(f"tier {tier!r} has no roster (see `collect roster import`)")
    return frame, ids


def _tier_for_draw(store: Store, connection: Connection, campaign: str, tier: str) -> int:
    loaded = load_campaign(store, connection, campaign)
    if loaded is None:
        raise SamplingError(f"campaign {campaign!r} does not exist")
    spec_tier = loaded.spec.tier(tier)
    if spec_tier is None:
        raise SamplingError(f"tier {tier!r} is not in campaign {campaign}")
    if spec_tier.source != "roster" or spec_tier.sampling != "draw":
        raise SamplingError(
            f"tier {tier!r} is not drawn (source={spec_tier.source}, sampling={spec_tier.sampling}): "
            "everyone on its roster counts"
        )
    return loaded.id


def draw_sample(
    store: Store,
    campaign: str,
    tier: str,
    *,
    method: Method,
    size: int,
    seed: str,
    strata: str | None = None,
    size_column: str | None = None,
    allocation: Mapping[str, int] | None = None,
    actor: str,
    force: bool = False,
) -> DrawResult:
    """
    Draw the tier's sample and record it (draw, members, respondent.in_sample, audit log).

    The same request again returns the recorded draw. A different one is refused unless
    `force`, and always refused once the tier has ballots: a sample cannot change under votes.
    """
    if method == "stratified" and not strata:
        raise SamplingError("a stratified draw needs --strata COLUMN")
    if method == "pps" and not size_column:
        raise SamplingError("a PPS draw needs --size-column COLUMN")
    if allocation is not None and method != "stratified":
        raise SamplingError("--allocate is for stratified draws")
    params: dict[str, Any] = {"size": size}
    if strata:
        params["strata"] = strata
    if size_column:
        params["size_column"] = size_column
    if allocation is not None:
        params["allocation"] = dict(sorted(allocation.items()))
    elif method == "stratified":
        params["allocation"] = "proportional"
    with store.engine.begin() as connection:
        campaign_id = _tier_for_draw(store, connection, campaign, tier)
        frame, ids = _frame(connection, campaign_id, tier, strata, size_column if method == "pps" else None)
        sha = frame_sha256(frame)
        previous = connection.execute(
            sa.select(SAMPLE_DRAW)
            .where(
                SAMPLE_DRAW.c.campaign_id == campaign_id,
                SAMPLE_DRAW.c.tier_code == tier,
                SAMPLE_DRAW.c.kind == "draw",
            )
            .order_by(SAMPLE_DRAW.c.id.desc())
        ).first()
        if previous is not None:
            same = (previous.method, previous.params, previous.seed, previous.frame_sha256) == (
                method,
                params,
                seed,
                sha,
            )
            if same:
                return _recorded(connection, previous, new=False)
            if not force:
                raise SamplingError(
                    f"tier {tier!r} was drawn before (draw {previous.id}, seed {previous.seed!r}); "
                    "a different draw replaces that sample: give --force (recorded), or use "
                    "`collect sample replace` for unreachable respondents"
                )
            voted = connection.execute(
                sa.select(sa.func.count())
                .select_from(BALLOT)
                .where(BALLOT.c.campaign_id == campaign_id, BALLOT.c.tier_code == tier)
            ).scalar_one()
            if voted:
                raise SamplingError(f"tier {tier!r} has {voted} ballots: its sample cannot be drawn again")
        picked = run_method(frame, method, size, seed, allocation)
        draw_id = connection.execute(
            sa.insert(SAMPLE_DRAW)
            .values(
                campaign_id=campaign_id,
                tier_code=tier,
                kind="draw",
                method=method,
                params=params,
                seed=seed,
                frame_sha256=sha,
                frame_size=len(frame),
                size=len(picked),
                drawn_at=utcnow(),
                actor=actor,
                replaces_draw_id=previous.id if previous is not None else None,
            )
            .returning(SAMPLE_DRAW.c.id)
        ).scalar_one()
        with_strata = bool(strata)
        connection.execute(
            sa.insert(SAMPLE_MEMBER),
            [
                {
                    "draw_id": draw_id,
                    "respondent_id": ids[row.roster_id],
                    "position": position,
                    "stratum": row.stratum if with_strata else None,
                    "replaces_respondent_id": None,
                }
                for position, row in enumerate(picked, start=1)
            ],
        )
        connection.execute(
            sa.update(RESPONDENT)
            .where(RESPONDENT.c.campaign_id == campaign_id, RESPONDENT.c.tier_code == tier)
            .values(in_sample=False)
        )
        _set_in_sample(connection, [ids[r.roster_id] for r in picked], True)
        _audit(connection, actor, "sample.draw", campaign, tier, draw_id, method, seed, sha, len(picked))
        row = connection.execute(sa.select(SAMPLE_DRAW).where(SAMPLE_DRAW.c.id == draw_id)).one()
        return _recorded(connection, row, new=True)


def replace_unreachable(
    store: Store,
    campaign: str,
    tier: str,
    unreachable_ids: Sequence[str],
    *,
    seed: str | None = None,
    actor: str,
) -> DrawResult:
    """
    Draw one replacement for each unreachable respondent (given by roster id) and record it as a
    replacement draw: the original draw's rows stay as they were; the unreachable leave the
    sample (in_sample false) and their replacements join it.
    """
    if not unreachable_ids:
        raise SamplingError("name at least one unreachable respondent")
    with store.engine.begin() as connection:
        campaign_id = _tier_for_draw(store, connection, campaign, tier)
        original = connection.execute(
            sa.select(SAMPLE_DRAW)
            .where(
                SAMPLE_DRAW.c.campaign_id == campaign_id,
                SAMPLE_DRAW.c.tier_code == tier,
                SAMPLE_DRAW.c.kind == "draw",
            )
            .order_by(SAMPLE_DRAW.c.id.desc())
        ).first()
        if original is None:
            raise SamplingError(f"tier {tier!r} has no draw to replace respondents of")
        strata = original.params.get("strata")
        same_stratum = original.method == "stratified"
        frame, ids = _frame(connection, campaign_id, tier, strata, None)
        by_id = {r.roster_id: r for r in frame}
        draws = [
            d.id
            for d in connection.execute(
                sa.select(SAMPLE_DRAW.c.id).where(
                    sa.or_(SAMPLE_DRAW.c.id == original.id, SAMPLE_DRAW.c.replaces_draw_id == original.id)
                )
            )
        ]
        members = connection.execute(
            sa.select(SAMPLE_MEMBER.c.respondent_id, SAMPLE_MEMBER.c.replaces_respondent_id).where(
                SAMPLE_MEMBER.c.draw_id.in_(draws)
            )
        ).all()
        ever = {m.respondent_id for m in members}
        replaced_before = {m.replaces_respondent_id for m in members if m.replaces_respondent_id}
        roster_by_respondent = {v: k for k, v in ids.items()}
        problems: list[str] = []
        gone: list[FrameRow] = []
        for number, roster_id in enumerate(unreachable_ids, start=1):
            respondent_id = ids.get(roster_id)
            # Never echo the roster id itself: messages reach logs. Say which item of the list.
            if respondent_id is None:
                problems.append(f"item {number}: not on the roster of tier {tier}")
            elif respondent_id not in ever or respondent_id in replaced_before:
                problems.append(f"item {number}: not in the current sample")
            else:
                gone.append(by_id[roster_id])
        key_of = {
            r.id: r.key
            for r in connection.execute(
                sa.select(RESPONDENT.c.id, RESPONDENT.c.key).where(
                    RESPONDENT.c.id.in_([ids[g.roster_id] for g in gone])
                )
            )
        }
        voters = set(
            connection.execute(
                sa.select(BALLOT.c.voter_key).where(
                    BALLOT.c.campaign_id == campaign_id,
                    BALLOT.c.voter_key.in_(list(key_of.values())),
                    BALLOT.c.status.in_(["counted", "pending_review"]),
                )
            ).scalars()
        )
        for number, row in enumerate(gone, start=1):
            if key_of[ids[row.roster_id]] in voters:
                problems.append(f"respondent {number} of the list has voted: not unreachable")
        if problems:
            raise SamplingError("cannot replace: " + "; ".join(problems))
        use_seed = seed if seed is not None else original.seed
        ever_roster = {roster_by_respondent[r] for r in ever if r in roster_by_respondent}
        pairs = replacements(frame, ever_roster, gone, use_seed, same_stratum=same_stratum)
        sha = frame_sha256(frame)
        draw_id = connection.execute(
            sa.insert(SAMPLE_DRAW)
            .values(
                campaign_id=campaign_id,
                tier_code=tier,
                kind="replacement",
                method="simple",
                params={"replaces": len(pairs), "strata": strata, "same_stratum": same_stratum},
                seed=use_seed,
                frame_sha256=sha,
                frame_size=len(frame),
                size=len(pairs),
                drawn_at=utcnow(),
                actor=actor,
                replaces_draw_id=original.id,
            )
            .returning(SAMPLE_DRAW.c.id)
        ).scalar_one()
        connection.execute(
            sa.insert(SAMPLE_MEMBER),
            [
                {
                    "draw_id": draw_id,
                    "respondent_id": ids[new.roster_id],
                    "position": position,
                    "stratum": new.stratum if strata else None,
                    "replaces_respondent_id": ids[old.roster_id],
                }
                for position, (old, new) in enumerate(pairs, start=1)
            ],
        )
        _set_in_sample(connection, [ids[old.roster_id] for old, _ in pairs], False)
        _set_in_sample(connection, [ids[new.roster_id] for _, new in pairs], True)
        _audit(
            connection, actor, "sample.replace", campaign, tier, draw_id, "simple", use_seed, sha, len(pairs)
        )
        recorded = connection.execute(sa.select(SAMPLE_DRAW).where(SAMPLE_DRAW.c.id == draw_id)).one()
        return _recorded(connection, recorded, new=True)


def _set_in_sample(connection: Connection, respondent_ids: list[int], value: bool) -> None:
    # Chunked: PostgreSQL and SQLite cap the number of bound parameters in one statement.
    for start in range(0, len(respondent_ids), 5000):
        chunk = respondent_ids[start : start + 5000]
        connection.execute(sa.update(RESPONDENT).where(RESPONDENT.c.id.in_(chunk)).values(in_sample=value))


def _audit(
    connection: Connection,
    actor: str,
    action: str,
    campaign: str,
    tier: str,
    draw_id: int,
    method: str,
    seed: str,
    sha: str,
    size: int,
) -> None:
    # No roster ids: the draw can be redone from the frame, so the log needs only the inputs.
    connection.execute(
        sa.insert(AUDIT).values(
            at=utcnow(),
            actor=actor,
            action=action,
            campaign_code=campaign,
            target=tier,
            detail={"draw": draw_id, "method": method, "seed": seed, "frame_sha256": sha, "size": size},
        )
    )


def _recorded(connection: Connection, draw: sa.Row[Any], *, new: bool) -> DrawResult:
    members = connection.execute(
        sa.select(CONTACT.c.value, SAMPLE_MEMBER.c.stratum, SAMPLE_MEMBER.c.replaces_respondent_id)
        .join(
            CONTACT,
            sa.and_(CONTACT.c.respondent_id == SAMPLE_MEMBER.c.respondent_id, CONTACT.c.kind == "roster_id"),
        )
        .where(SAMPLE_MEMBER.c.draw_id == draw.id)
        .order_by(SAMPLE_MEMBER.c.position)
    ).all()
    return DrawResult(
        draw_id=int(draw.id),
        new=new,
        kind=str(draw.kind),
        method=str(draw.method),
        seed=str(draw.seed),
        frame_sha256=str(draw.frame_sha256),
        frame_size=int(draw.frame_size),
        picked=tuple(Picked(m.value, m.stratum) for m in members),
        replaced=sum(1 for m in members if m.replaces_respondent_id is not None),
    )
