"""
Content clusters: identical answer vectors far beyond what the campaign's own answers make likely.

For forms without a serial (the newspaper form) and open channels, a photocopy can only be seen
in its content. The test (docs/sampling.md, "Content clusters"): under independence of a form's
answers, a vector v is expected λ = S·Π_j p_j(v_j) times among S forms; its count is
Binomial(S, π), whose upper tail we bound by Poisson's, itself bounded by its first term times a
geometric series. Bonferroni over every possible vector (Π_j K_j) keeps the chance of any false
cluster in a campaign that fits the model below α.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from collect.campaign import ALL_CHANNELS
from collect.dedupe.review import Finding, campaign_id_of, file_findings
from collect.store import Store

DEFAULT_ALPHA = 0.001
KIND = "content_cluster"
REASON = "identical_answers"
_NONE = "<none>"  # a form that leaves a unit/aspect unanswered: its own value in the vector

NULL_MODEL_NOTE = (
    "independence of answers across units and aspects; correlated answers (e.g. one person "
    "ticking 'satisfied' everywhere) make common vectors commoner than this model says, so "
    "straight-line vectors are flagged more readily: review them against the scans"
)


@dataclass(frozen=True, slots=True)
class Cluster:
    vector: str  # "unit/aspect=value" cells joined by " · ", in position order
    vector_sha256: str
    observed: int
    expected: float
    log10_p: float
    submission_ids: tuple[int, ...]
    distribution: dict[str, int]


@dataclass(frozen=True, slots=True)
class ScanResult:
    forms: int
    distinct_vectors: int
    positions: int
    log10_vectors_tested: float
    alpha: float
    log10_threshold: float
    clusters: tuple[Cluster, ...]
    new_items: int
    serialed_skipped: int = 0  # serialed paper forms left to the issuance ledger

    @property
    def flagged_forms(self) -> int:
        return sum(c.observed for c in self.clusters)


def read_frame(store: Store, query: str, schema: dict[str, Any]) -> pl.DataFrame:
    """
    A query's rows through connectorx (several times faster than a DB-API cursor on 1 M rows),
    cast to `schema`. connectorx takes no bound parameters: callers inline only integers and
    names from fixed lists.
    """
    url = make_url(store.url)
    if url.get_backend_name() == "sqlite":
        # Not connectorx: it links its own copy of SQLite, and two copies in one process release
        # each other's POSIX locks (sqlite.org/howtocorrupt.html, 2.2.1): disk I/O errors follow.
        with store.engine.connect() as connection:
            frame = pl.read_database(sa.text(query), connection, infer_schema_length=None)
        if frame.height == 0:
            return pl.DataFrame(schema=schema)
        return frame.select(pl.col(name).cast(dtype) for name, dtype in schema.items())
    plain = url.set(drivername="postgresql")
    # libpq parameters connectorx understands stay (options=-csearch_path=… in the tests).
    keep = {"options", "sslmode", "connect_timeout", "application_name"}
    plain = plain.difference_update_query([k for k in plain.query if k not in keep])
    uri = plain.render_as_string(hide_password=False)
    frame = pl.read_database_uri(query, uri, engine="connectorx")
    if frame.width == 0 or frame.height == 0:
        # An empty result comes back without columns (SQLite) or with guessed types.
        return pl.DataFrame(schema=schema)
    return frame.select(pl.col(name).cast(dtype) for name, dtype in schema.items())


ANSWER_SCHEMA: dict[str, Any] = {
    "submission_id": pl.Int64,
    "unit_code": pl.String,
    "aspect_code": pl.String,
    "level_code": pl.String,
    "points": pl.Int64,
    "dont_know": pl.Boolean,
    "meta": pl.String,
}


def answers_frame(store: Store, campaign_id: int, channels: Sequence[str] | None) -> pl.LazyFrame:
    """One row per answer of every ballot in scope (any status: the test sees every form received)."""
    where = f"b.campaign_id = {int(campaign_id)}"
    if channels:
        unknown = sorted(set(channels) - set(ALL_CHANNELS))
        if unknown:
            raise ValueError(f"unknown channels: {', '.join(unknown)}")
        # Inlined: only names from the fixed channel list get this far.
        where += " AND b.channel IN (" + ", ".join(f"'{c}'" for c in channels) + ")"
    query = (
        "SELECT b.submission_id AS submission_id, b.unit_code AS unit_code, a.aspect_code AS aspect_code, "
        "a.level_code AS level_code, a.points AS points, "
        "CASE WHEN a.dont_know THEN 1 ELSE 0 END AS dont_know, "
        "CAST(b.meta AS TEXT) AS meta "
        f"FROM ballot b JOIN answer a ON a.ballot_id = b.id WHERE {where}"
    )
    return read_frame(store, query, ANSWER_SCHEMA).lazy()


def find_clusters(
    answers: pl.LazyFrame, *, alpha: float = DEFAULT_ALPHA
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """
    The test, on answers (submission_id, unit_code, aspect_code, level_code, points, dont_know,
    meta). Returns one row per distinct vector seen at least twice (observed, expected, log10 p,
    flagged) and the scan's totals.
    """
    cells = answers.select(
        pl.col("submission_id").cast(pl.Int64),
        (pl.col("unit_code") + "/" + pl.col("aspect_code")).alias("position"),
        pl.coalesce(
            pl.col("level_code"),
            pl.col("points").cast(pl.String),
            pl.when(pl.col("dont_know").cast(pl.Boolean)).then(pl.lit("dont_know")),
        ).alias("value"),
        pl.col("meta").str.json_path_match("$.distribution").alias("distribution"),
    ).collect()
    forms = cells["submission_id"].n_unique()
    if forms == 0:
        empty = pl.DataFrame(
            schema={
                "vector": pl.String,
                "observed": pl.UInt32,
                "expected": pl.Float64,
                "log10_p": pl.Float64,
                "flagged": pl.Boolean,
                "submission_ids": pl.List(pl.Int64),
            }
        )
        return empty, {"forms": 0, "distinct_vectors": 0, "positions": 0, "log10_vectors_tested": 0.0}
    lazy = cells.lazy()
    # p_j(x): share of forms answering x at position j; "<none>" is the share not answering j.
    marginals = (
        lazy.group_by("position", "value")
        .agg(pl.col("submission_id").n_unique().alias("n"))
        .with_columns((pl.col("n") / forms).log().alias("ln_p"))
    )
    answered = lazy.group_by("position").agg(pl.col("submission_id").n_unique().alias("answered"))
    absent = answered.with_columns((forms - pl.col("answered")).alias("none")).with_columns(
        pl.when(pl.col("none") > 0).then((pl.col("none") / forms).log()).otherwise(0.0).alias("ln_none")
    )
    per_position = (
        marginals.group_by("position")
        .agg(pl.len().alias("k"))
        .join(absent, on="position")
        .with_columns((pl.col("k") + (pl.col("none") > 0).cast(pl.Int64)).alias("k"))
        .collect()
    )
    # Bonferroni family: every vector the form could produce, Π_j K_j (in logs: it can be 3^43).
    ln_family = float(per_position["k"].cast(pl.Float64).log().sum())
    ln_base = float(per_position["ln_none"].sum())  # a form answering nothing
    ln_threshold = math.log(alpha) - ln_family
    per_form = (
        lazy.join(marginals.select("position", "value", "ln_p"), on=["position", "value"])
        .join(absent.select("position", "ln_none"), on="position")
        .group_by("submission_id")
        .agg(
            (pl.col("position") + "=" + pl.col("value").fill_null(_NONE))
            .sort_by("position")
            .str.join(" · ")
            .alias("vector"),
            (pl.col("ln_p") - pl.col("ln_none")).sum().alias("ln_pi_delta"),
            pl.col("distribution").first(),
        )
        .with_columns((pl.col("ln_pi_delta") + ln_base).alias("ln_pi"))
    )
    ln_s = math.log(forms)
    vectors = (
        per_form.group_by("vector")
        .agg(
            pl.len().alias("observed"),
            pl.col("ln_pi").first(),
            pl.col("submission_id").sort().alias("submission_ids"),
            pl.col("distribution"),
        )
        .filter(pl.col("observed") >= 2)
        .with_columns((pl.col("ln_pi") + ln_s).alias("ln_lambda"))
        .with_columns(pl.col("ln_lambda").exp().alias("expected"))
    )
    counts = vectors.select(pl.col("observed").max()).collect().item()
    max_m = int(counts) if counts is not None else 1
    # ln m! by a running sum of logs: exact enough and vectorised (polars has no lgamma).
    log_factorial = pl.LazyFrame(
        {"observed": pl.int_range(1, max_m + 1, eager=True).cast(pl.UInt32)}
    ).with_columns(pl.col("observed").cast(pl.Float64).log().cum_sum().alias("ln_fact"))
    m = pl.col("observed").cast(pl.Float64)
    lam = pl.col("expected")
    # P(X ≥ m) ≤ P(X = m) / (1 − λ/(m+1)) for λ < m+1 (successive terms shrink by λ/(k+1));
    # otherwise the tail is not small and 1 bounds it.
    ln_first = -lam + m * pl.col("ln_lambda") - pl.col("ln_fact")
    ln_tail = (
        pl.when(lam < m + 1)
        .then(pl.min_horizontal(pl.lit(0.0), ln_first - (1 - lam / (m + 1)).log()))
        .otherwise(0.0)
    )
    result = (
        vectors.join(log_factorial, on="observed")
        .with_columns(ln_tail.alias("ln_p"))
        .with_columns(
            (pl.col("ln_p") / math.log(10)).alias("log10_p"),
            (pl.col("ln_p") < ln_threshold).alias("flagged"),
        )
        .select("vector", "observed", "expected", "log10_p", "flagged", "submission_ids", "distribution")
        .sort("log10_p", "vector")
        .collect()
    )
    distinct = per_form.select(pl.col("vector").n_unique()).collect().item()
    totals = {
        "forms": forms,
        "distinct_vectors": int(distinct),
        "positions": per_position.height,
        "log10_vectors_tested": ln_family / math.log(10),
        "log10_threshold": ln_threshold / math.log(10),
    }
    return result, totals


def scan(
    store: Store,
    campaign: str,
    *,
    channels: Sequence[str] | None = None,
    alpha: float = DEFAULT_ALPHA,
) -> ScanResult:
    """
    Run the test over the campaign's forms (optionally some channels) and file one review item
    per form of each flagged vector, holding its ballots. Re-running files nothing twice.
    """
    if not 0 < alpha < 1:
        raise ValueError("alpha must lie strictly between 0 and 1")
    with store.engine.connect() as connection:
        campaign_id = campaign_id_of(connection, campaign)
    frame = answers_frame(store, campaign_id, channels)
    # A form with a serial is the issuance ledger's business (collect.paper.entry): a second use
    # of its serial is what betrays a copy. Identical answers on serialed forms are not evidence.
    serialed = pl.col("meta").str.json_path_match("$.serialed").fill_null("") == "true"
    skipped = frame.filter(serialed).select(pl.col("submission_id").n_unique()).collect().item()
    table, totals = find_clusters(frame.filter(~serialed), alpha=alpha)
    totals["serialed_forms_skipped"] = int(skipped)
    clusters: list[Cluster] = []
    for row in table.filter(pl.col("flagged")).iter_rows(named=True):  # flagged vectors: few
        distribution: dict[str, int] = {}
        for name in row["distribution"]:
            key = name if name is not None else "(none)"
            distribution[key] = distribution.get(key, 0) + 1
        clusters.append(
            Cluster(
                vector=row["vector"],
                vector_sha256=hashlib.sha256(row["vector"].encode()).hexdigest(),
                observed=int(row["observed"]),
                expected=float(row["expected"]),
                log10_p=float(row["log10_p"]),
                submission_ids=tuple(int(s) for s in row["submission_ids"]),
                distribution=dict(sorted(distribution.items())),
            )
        )
    log10_threshold = float(totals.get("log10_threshold", math.log10(alpha)))
    findings = [
        Finding(
            kind=KIND,
            reason=REASON,
            fingerprint=f"{cluster.vector_sha256[:40]}:{submission_id}",
            evidence=_evidence(cluster, totals, alpha, log10_threshold, channels),
            submission_id=submission_id,
        )
        for cluster in clusters
        for submission_id in cluster.submission_ids
    ]
    with store.engine.begin() as connection:
        new_items = file_findings(connection, campaign_id, findings)
    return ScanResult(
        forms=int(totals["forms"]),
        distinct_vectors=int(totals["distinct_vectors"]),
        positions=int(totals["positions"]),
        log10_vectors_tested=float(totals["log10_vectors_tested"]),
        alpha=alpha,
        log10_threshold=log10_threshold,
        clusters=tuple(clusters),
        new_items=new_items,
        serialed_skipped=int(totals.get("serialed_forms_skipped", 0)),
    )


def _evidence(
    cluster: Cluster,
    totals: dict[str, Any],
    alpha: float,
    log10_threshold: float,
    channels: Sequence[str] | None,
) -> dict[str, Any]:
    # Answers and counts only: no identity, no token, no roster id can be in here.
    return {
        "test": "identical answer vector; Poisson upper tail (bounds the binomial) under independence, "
        "Bonferroni over every possible vector",
        "null_model": NULL_MODEL_NOTE,
        "vector": cluster.vector,
        "vector_sha256": cluster.vector_sha256,
        "observed": cluster.observed,
        "expected": cluster.expected,
        "p_value": 10**cluster.log10_p,  # 0.0 when below the smallest float: see log10_p_value
        "log10_p_value": round(cluster.log10_p, 3),
        "alpha": alpha,
        "log10_vectors_tested": round(float(totals["log10_vectors_tested"]), 3),
        "threshold": 10**log10_threshold,
        "log10_threshold": round(log10_threshold, 3),
        "forms_scanned": int(totals["forms"]),
        "channels": list(channels) if channels else "all",
        "cluster_by_distribution": cluster.distribution,
    }
