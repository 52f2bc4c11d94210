"""
`collect report`: received / valid / invalid by reason, channel and distribution channel, quota
fill, sample draws, and reconciliation checks that must all hold.

Forms (submissions) are what the sources count ("11,436 received, 10,834 valid, 602 invalid");
ballots are one per unit rated. Read-only; no phone number, token or roster id is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl
import sqlalchemy as sa

from collect.dedupe.clusters import read_frame
from collect.dedupe.review import campaign_id_of
from collect.ingest import as_utc
from collect.store import Store
from collect.store.campaigns import load_campaign
from collect.store.tables import BALLOT, RESPONDENT, REVIEW_ITEM, SAMPLE_DRAW, SAMPLE_MEMBER

BALLOT_STATUSES = ("counted", "superseded", "duplicate", "invalid", "pending_review")
SUBMISSION_STATUSES = ("accepted", "rejected", "conflict")

# How reasons read in the table (the JSON keeps the codes). Every reason a ballot or a paper
# form can be set aside for has one (tests/dedupe/test_report_labels.py finds them in the code).
LABELS = {
    # photocopies and forgeries (dedupe, paper serials, window bursts)
    "identical_answers": "photocopies: identical answers",
    "serial_reused": "photocopies: serial used again",
    "serial_reused_different_answers": "serial used again with other answers",
    "serial_unknown": "forged: serial never issued",
    "signature_mismatch": "forged: signature does not fit the serial",
    "serial_mistyped": "serial one slip from an issued one",
    "signature_mistyped": "signature one symbol off",
    "serial_missing": "no serial on a serialed form",
    "serial_malformed": "not a serial",
    "window_burst": "burst of top ratings at one window",
    # keying (double entry)
    "form_number_missing": "double entry: no receipt number",
    "already_entered_by_clerk": "double entry: same clerk twice",
    "form_already_settled": "double entry: form already taken in",
    "disagreement": "double entry: clerks disagree",
    "awaiting": "double entry: waiting for the second clerk",
    # the one-vote rule and sampling
    "not_sampled": "not sampled",
    "earlier_answer_counts": "superseded: earlier answer counts",
    "later_answer_counts": "superseded: later answer counts",
    "transaction_already_rated": "duplicate: transaction already rated",
}


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Report:
    campaign: str
    forms: dict[str, Any] = field(default_factory=dict)
    ballots: dict[str, Any] = field(default_factory=dict)
    submissions: dict[str, Any] = field(default_factory=dict)
    quota: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    review: dict[str, int] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "forms": self.forms,
            "ballots": self.ballots,
            "submissions": self.submissions,
            "quota": self.quota,
            "samples": self.samples,
            "review": self.review,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "ok": self.ok,
        }


_BALLOT_SCHEMA: dict[str, Any] = {
    "submission_id": pl.Int64,
    "channel": pl.String,
    "status": pl.String,
    "reason": pl.String,
    "tier_code": pl.String,
    "unit_code": pl.String,
    "meta": pl.String,
}
_SUBMISSION_SCHEMA: dict[str, Any] = {
    "id": pl.Int64,
    "channel": pl.String,
    "status": pl.String,
    "reason": pl.String,
    "meta": pl.String,
}


def _distribution() -> pl.Expr:
    return pl.col("meta").str.json_path_match("$.distribution").fill_null("(none)").alias("distribution")


def _ballot_counts(frame: pl.DataFrame) -> dict[str, Any]:
    """Counts by status, and non-counted ones by status and reason (sorted: stable output)."""
    by_status = dict(frame.group_by("status").len().sort("status").iter_rows())
    out: dict[str, Any] = {"received": frame.height}
    for status in BALLOT_STATUSES:
        out[status] = int(by_status.get(status, 0))
    other = {s: n for s, n in by_status.items() if s not in BALLOT_STATUSES}
    if other:
        out["unknown_status"] = other
    reasons = (
        frame.filter(pl.col("status") != "counted")
        .group_by("status", "reason")
        .len()
        .sort("status", "reason", nulls_last=True)
    )
    out["by_reason"] = {f"{s}:{r if r is not None else '-'}": int(n) for s, r, n in reasons.iter_rows()}
    return out


def _form_counts(forms: pl.DataFrame) -> dict[str, Any]:
    by_outcome = dict(forms.group_by("outcome").len().iter_rows())
    invalid = forms.filter(pl.col("outcome") == "invalid").group_by("why").len().sort("why")
    return {
        "received": forms.height,
        "valid": int(by_outcome.get("valid", 0)),
        "pending_review": int(by_outcome.get("pending_review", 0)),
        "invalid": int(by_outcome.get("invalid", 0)),
        "invalid_by_reason": {str(w): int(n) for w, n in invalid.iter_rows()},
    }


def _grouped(frame: pl.DataFrame, column: str, counter: Any) -> dict[str, Any]:
    keys = sorted(frame[column].unique().to_list())
    return {str(k): counter(frame.filter(pl.col(column) == k)) for k in keys}


def build_report(store: Store, campaign: str) -> Report:
    with store.engine.connect() as connection:
        campaign_id = campaign_id_of(connection, campaign)
        loaded = load_campaign(store, connection, campaign)
        assert loaded is not None  # campaign_id_of found it
        spec = loaded.spec
    ballots = read_frame(
        store,
        "SELECT submission_id, channel, status, reason, tier_code, unit_code, CAST(meta AS TEXT) AS meta "
        f"FROM ballot WHERE campaign_id = {int(campaign_id)}",
        _BALLOT_SCHEMA,
    ).with_columns(_distribution())
    # Submissions are keyed by campaign code; the code comes from the store, quoted as a literal.
    code_literal = campaign.replace("'", "''")
    submissions = read_frame(
        store,
        "SELECT id, channel, status, reason, CAST(meta AS TEXT) AS meta "
        f"FROM submission WHERE campaign_code = '{code_literal}'",
        _SUBMISSION_SCHEMA,
    ).with_columns(_distribution())
    report = Report(campaign=campaign)

    # A form's outcome: valid if any of its ballots counts; pending if any is held; otherwise
    # invalid, with the reason of its first non-counted ballot (or the submission's rejection).
    per_form = ballots.group_by("submission_id").agg(
        (pl.col("status") == "counted").any().alias("any_counted"),
        (pl.col("status") == "pending_review").any().alias("any_pending"),
        pl.col("reason").drop_nulls().sort().first().alias("ballot_reason"),
        pl.col("status").sort().first().alias("ballot_status"),
        pl.col("distribution").first().alias("ballot_distribution"),
    )
    forms = submissions.join(per_form, left_on="id", right_on="submission_id", how="left").with_columns(
        pl.when(pl.col("any_counted").fill_null(False))
        .then(pl.lit("valid"))
        .when(pl.col("any_pending").fill_null(False))
        .then(pl.lit("pending_review"))
        .otherwise(pl.lit("invalid"))
        .alias("outcome"),
        pl.when(pl.col("status") != "accepted")
        .then(pl.coalesce(pl.col("reason"), pl.col("status")))
        .otherwise(pl.coalesce(pl.col("ballot_reason"), pl.col("ballot_status"), pl.lit("no_ballots")))
        .alias("why"),
        # A distribution channel may be on the ballot (paper meta) or on the submission.
        pl.when(pl.col("distribution") == "(none)")
        .then(pl.col("ballot_distribution").fill_null("(none)"))
        .otherwise(pl.col("distribution"))
        .alias("distribution"),
    )
    report.forms = {
        "total": _form_counts(forms),
        "by_channel": _grouped(forms, "channel", _form_counts),
        "by_distribution": _grouped(forms, "distribution", _form_counts),
    }
    report.ballots = {
        "total": _ballot_counts(ballots),
        "by_channel": _grouped(ballots, "channel", _ballot_counts),
        "by_distribution": _grouped(ballots, "distribution", _ballot_counts),
        "by_tier": _grouped(ballots, "tier_code", _ballot_counts),
    }
    sub_status = dict(submissions.group_by("status").len().iter_rows())
    rejected = (
        submissions.filter(pl.col("status") != "accepted")
        .group_by("reason")
        .len()
        .sort("reason", nulls_last=True)
    )
    report.submissions = {
        "received": submissions.height,
        **{s: int(sub_status.get(s, 0)) for s in SUBMISSION_STATUSES},
        "rejected_by_reason": {str(r): int(n) for r, n in rejected.iter_rows()},
        "by_channel": {
            str(c): int(n) for c, n in submissions.group_by("channel").len().sort("channel").iter_rows()
        },
    }

    counted = ballots.filter(pl.col("status") == "counted").group_by("tier_code", "unit_code").len().rows()
    counted_by = {(t, u): int(n) for t, u, n in counted}
    for tier in spec.tiers:
        for unit in spec.units:
            got = counted_by.get((tier.code, unit.code), 0)
            report.quota.append(
                {
                    "tier": tier.code,
                    "unit": unit.code,
                    "counted": got,
                    "quota": tier.quota,
                    "fill": round(got / tier.quota, 4) if tier.quota else None,
                }
            )

    with store.engine.connect() as connection:
        report.samples = _samples(connection, campaign_id)
        report.review = {
            str(s): int(n)
            for s, n in connection.execute(
                sa.select(REVIEW_ITEM.c.status, sa.func.count())
                .where(REVIEW_ITEM.c.campaign_id == campaign_id)
                .group_by(REVIEW_ITEM.c.status)
            )
        }
        report.checks = _checks(connection, campaign_id, ballots, submissions, forms, report, spec)
    report.checks.extend(_paper_checks(store, campaign))
    return report


def _paper_checks(store: Store, campaign: str) -> list[Check]:
    """
    The issuance ledger's reconciliation (issued = returned + not returned, every paper
    submission from a keyed entry), when the campaign printed forms: one report, every check.
    """
    # Imported here: paper builds on dedupe (keys, review items), not the other way round.
    from collect.paper.ledger import build_ledger

    ledger = build_ledger(store, campaign)
    if not ledger.rows:
        return []
    return [Check(f"paper ledger: {c.name}", c.ok, c.detail) for c in ledger.checks]


def _samples(connection: sa.Connection, campaign_id: int) -> list[dict[str, Any]]:
    rows = connection.execute(
        sa.select(SAMPLE_DRAW).where(SAMPLE_DRAW.c.campaign_id == campaign_id).order_by(SAMPLE_DRAW.c.id)
    ).all()
    return [
        {
            "draw": r.id,
            "tier": r.tier_code,
            "kind": r.kind,
            "method": r.method,
            "params": r.params,
            "seed": r.seed,
            "frame_sha256": r.frame_sha256,
            "frame_size": r.frame_size,
            "size": r.size,
            "replaces_draw": r.replaces_draw_id,
            "drawn_at": as_utc(r.drawn_at).isoformat(),
            "actor": r.actor,
        }
        for r in rows
    ]


def _checks(
    connection: sa.Connection,
    campaign_id: int,
    ballots: pl.DataFrame,
    submissions: pl.DataFrame,
    forms: pl.DataFrame,
    report: Report,
    spec: Any,
) -> list[Check]:
    checks: list[Check] = []
    # 1. Every ballot is in exactly one known status, overall and per channel.
    bad = []
    for scope, counts in [("all", report.ballots["total"]), *report.ballots["by_channel"].items()]:
        parts = sum(counts[s] for s in BALLOT_STATUSES)
        if parts != counts["received"]:
            bad.append(f"{scope}: {counts['received']} received, statuses add up to {parts}")
    total = report.ballots["total"]
    checks.append(
        Check(
            "ballots: received = counted + superseded + duplicate + invalid + pending review",
            not bad,
            "; ".join(bad) or f"{total['received']} = {' + '.join(str(total[s]) for s in BALLOT_STATUSES)}",
        )
    )
    # 2. Every submission is accepted, rejected or conflict.
    sub = report.submissions
    parts = sum(sub[s] for s in SUBMISSION_STATUSES)
    checks.append(
        Check(
            "submissions: received = accepted + rejected + conflict",
            parts == sub["received"],
            f"{sub['received']} = {' + '.join(str(sub[s]) for s in SUBMISSION_STATUSES)}",
        )
    )
    # 3. Forms: valid + pending + invalid; and every accepted form made ballots, no other did.
    f = report.forms["total"]
    checks.append(
        Check(
            "forms: received = valid + pending review + invalid",
            f["received"] == f["valid"] + f["pending_review"] + f["invalid"],
            f"{f['received']} = {f['valid']} + {f['pending_review']} + {f['invalid']}",
        )
    )
    with_ballots = set(ballots["submission_id"].unique().to_list())
    accepted = set(submissions.filter(pl.col("status") == "accepted")["id"].to_list())
    orphans = len(accepted - with_ballots)
    strays = len(with_ballots - accepted)
    checks.append(
        Check(
            "every accepted submission has ballots, and only those",
            orphans == 0 and strays == 0,
            f"{orphans} accepted without ballots, {strays} ballots' submissions not accepted",
        )
    )
    # 4. The one-vote rule (the UNIQUE index should make this impossible: checked, not assumed).
    doubles = connection.execute(
        sa.select(sa.func.count()).select_from(
            sa.select(BALLOT.c.unit_code, BALLOT.c.voter_key)
            .where(BALLOT.c.campaign_id == campaign_id, BALLOT.c.status == "counted")
            .group_by(BALLOT.c.unit_code, BALLOT.c.voter_key)
            .having(sa.func.count() > 1)
            .subquery()
        )
    ).scalar_one()
    checks.append(
        Check("at most one counted ballot per voter and unit", doubles == 0, f"{doubles} exceptions")
    )
    # 5. Drawn tiers: counted ballots come from respondents in the sample.
    drawn_tiers = [t.code for t in spec.tiers if t.source == "roster" and t.sampling == "draw"]
    outside = 0
    if drawn_tiers:
        outside = connection.execute(
            sa.select(sa.func.count())
            .select_from(BALLOT)
            .join(
                RESPONDENT,
                sa.and_(
                    RESPONDENT.c.campaign_id == BALLOT.c.campaign_id, RESPONDENT.c.key == BALLOT.c.voter_key
                ),
            )
            .where(
                BALLOT.c.campaign_id == campaign_id,
                BALLOT.c.status == "counted",
                BALLOT.c.tier_code.in_(drawn_tiers),
                RESPONDENT.c.in_sample.is_(False),
            )
        ).scalar_one()
    checks.append(
        Check("counted ballots of drawn tiers come from the sample", outside == 0, f"{outside} exceptions")
    )
    # 6. The sample is what the recorded draws say: latest draw + replacements − replaced.
    mismatched = []
    for tier in drawn_tiers:
        latest = connection.execute(
            sa.select(SAMPLE_DRAW.c.id)
            .where(
                SAMPLE_DRAW.c.campaign_id == campaign_id,
                SAMPLE_DRAW.c.tier_code == tier,
                SAMPLE_DRAW.c.kind == "draw",
            )
            .order_by(SAMPLE_DRAW.c.id.desc())
        ).scalar()
        if latest is None:
            continue
        members = connection.execute(
            sa.select(SAMPLE_MEMBER.c.respondent_id, SAMPLE_MEMBER.c.replaces_respondent_id)
            .join(SAMPLE_DRAW, SAMPLE_DRAW.c.id == SAMPLE_MEMBER.c.draw_id)
            .where(sa.or_(SAMPLE_DRAW.c.id == latest, SAMPLE_DRAW.c.replaces_draw_id == latest))
        ).all()
        expected = {m.respondent_id for m in members} - {
            m.replaces_respondent_id for m in members if m.replaces_respondent_id
        }
        actual = set(
            connection.execute(
                sa.select(RESPONDENT.c.id).where(
                    RESPONDENT.c.campaign_id == campaign_id,
                    RESPONDENT.c.tier_code == tier,
                    RESPONDENT.c.in_sample.is_(True),
                )
            ).scalars()
        )
        if expected != actual:
            mismatched.append(f"{tier}: {len(actual ^ expected)} respondents differ from draw {latest}")
    checks.append(
        Check("in-sample respondents match the recorded draws", not mismatched, "; ".join(mismatched) or "ok")
    )
    # 7. A decided review item holds nothing any more.
    still_held = 0
    # Two indexed joins rather than one join on an OR, which no index serves (seconds at 1 M).
    for link in (
        BALLOT.c.id == REVIEW_ITEM.c.ballot_id,
        sa.and_(REVIEW_ITEM.c.ballot_id.is_(None), BALLOT.c.submission_id == REVIEW_ITEM.c.submission_id),
    ):
        still_held += connection.execute(
            sa.select(sa.func.count())
            .select_from(REVIEW_ITEM)
            .join(BALLOT, link)
            .where(
                REVIEW_ITEM.c.campaign_id == campaign_id,
                REVIEW_ITEM.c.status != "open",
                BALLOT.c.status == "pending_review",
            )
        ).scalar_one()
    checks.append(
        Check("decided review items hold no ballot", still_held == 0, f"{still_held} ballots still held")
    )
    return checks


def headline(counts: dict[str, Any]) -> str:
    """ "11,436 received, 10,834 valid, 602 invalid (photocopies: identical answers 602)"."""
    text = f"{counts['received']:,} received, {counts['valid']:,} valid"
    if counts["pending_review"]:
        text += f", {counts['pending_review']:,} pending review"
    text += f", {counts['invalid']:,} invalid"
    if counts["invalid_by_reason"]:
        reasons = ", ".join(f"{LABELS.get(r, r)} {n:,}" for r, n in counts["invalid_by_reason"].items())
        text += f" ({reasons})"
    return text
