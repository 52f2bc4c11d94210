"""
The published results: one document (`document`) that JSON, CSV, the terminal table, XLSX and
HTML all render, so every format shows the same rounded numbers in the same order.

Numbers are rounded here, once, half away from zero (rounding.py); nothing downstream rounds.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import polars as pl
from rich.console import Console
from rich.table import Table

from aggregate.result import ScoreResult
from aggregate.rounding import publish
from aggregate.scores import SINGLE_METHOD
from collect.campaign import CampaignSpec

Document = dict[str, Any]

LABELS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "rank": "排名",
        "unit": "单位代码",
        "name": "单位名称",
        "group": "分组",
        "score": "得分",
        "ci95": "95%置信区间",
        "ci_lo": "置信下限",
        "ci_hi": "置信上限",
        "designation": "评定",
        "grade": "等级",
        "cast": "投票数",
        "valid": "有效票",
        "shortfall": "缺额",
        "below_threshold": "低于警戒线",
        "inseparable": "区间重叠",
        "deductions": "扣分",
        "rate": "满意率",
        "top": "满意单位",
        "bottom": "较不满意单位",
        "weighted": "加权",
        "missing": "缺少层面",
        "refused": "不予计分",
    },
    "en": {
        "rank": "Rank",
        "unit": "Unit",
        "name": "Name",
        "group": "Group",
        "score": "Score",
        "ci95": "95% CI",
        "ci_lo": "CI low",
        "ci_hi": "CI high",
        "designation": "Designation",
        "grade": "Grade",
        "cast": "Cast",
        "valid": "Valid",
        "shortfall": "Shortfall",
        "below_threshold": "Below threshold",
        "inseparable": "Overlaps",
        "deductions": "Deductions",
        "rate": "Satisfaction rate",
        "top": "Top",
        "bottom": "Bottom",
        "weighted": "weighted",
        "missing": "Missing tiers",
        "refused": "Not scored",
    },
}


def labels(spec: CampaignSpec, lang: str | None = None) -> dict[str, str]:
    return LABELS["en" if (lang or spec.lang) == "en" else "zh-CN"]


def _label(item_zh: str, item_en: str, lang: str) -> str:
    return item_en if lang == "en" and item_en else item_zh


def _tier_key(method: str, tier: str) -> str:
    """JSON key of a tier: its code, or `tier@method` under rule D (a tier may answer by several methods)."""
    return tier if method == SINGLE_METHOD else f"{tier}@{method}"


def _by_unit(frame: pl.DataFrame) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in frame.iter_rows(named=True):
        grouped.setdefault(row["unit"], []).append(row)
    return grouped


def document(result: ScoreResult) -> Document:
    """The published results as plain data: the JSON shape of contract.md, with fields added."""
    spec, scoring = result.spec, result.spec.scoring
    d, rd = scoring.decimals, scoring.rate_decimals
    levels = list(spec.scale.level_codes)
    f = result.frames

    units = result.units.with_columns(
        publish(pl.col("value"), rd if scoring.rule == "satisfaction_rate" else d).alias("value_pub"),
        publish(pl.col("rate"), rd).alias("rate_pub"),
        publish(pl.col("rate_deduction"), d).alias("rate_deduction_pub"),
        publish(pl.col("deductions"), d).alias("deductions_pub"),
    )
    parts = _by_unit(
        f.parts.with_columns(
            publish(pl.col("score"), rd if scoring.value_rule == "satisfaction_rate" else d).alias("score"),
            publish(pl.col("tier_weight"), rd).alias("tier_weight"),
            publish(pl.col("eff_weight"), rd).alias("eff_weight"),
        )
    )
    rates = _by_unit(f.rates.with_columns(publish(pl.col("rate"), rd).alias("rate")))
    weighted = _by_unit(f.weighted_rates.with_columns(publish(pl.col("rate"), rd).alias("rate")))
    methods = _by_unit(
        f.methods.with_columns(
            publish(pl.col("score"), d).alias("score"),
            publish(pl.col("applied_weight"), rd).alias("applied_weight"),
        )
    )

    out_units: list[dict[str, Any]] = []
    for row in units.iter_rows(named=True):
        code = row["unit"]
        tier_rates: dict[tuple[str, str], dict[str, float]] = {}
        for r in rates.get(code, []):
            tier_rates.setdefault((r["method"], r["tier"]), dict.fromkeys(levels, 0.0))[r["level"]] = r[
                "rate"
            ]
        tiers: dict[str, Any] = {}
        shortfall_total = 0
        for p in parts.get(code, []):
            entry: dict[str, Any] = {
                "cast": p["cast"],
                "valid": p["valid"],
                "rates": tier_rates.get((p["method"], p["tier"]), dict.fromkeys(levels, 0.0))
                if levels
                else {},
                "score": p["score"],
                "weight": p["weight"],
                "applied_weight": p["eff_weight"],
                "quota": p["quota"],
                "shortfall": p["shortfall"],
            }
            if p["method"] != SINGLE_METHOD:
                entry["method"] = p["method"]
            shortfall_total += p["shortfall"] or 0
            tiers[_tier_key(p["method"], p["tier"])] = entry
        wr = dict.fromkeys(levels, 0.0)
        for r in weighted.get(code, []):
            wr[r["level"]] = r["rate"]
        ci95 = None if row["ci_lo_pub"] is None else [row["ci_lo_pub"], row["ci_hi_pub"]]
        unit: dict[str, Any] = {
            "unit": code,
            "name": row["name"],
            "group": row["group"],
            "score": row["score_pub"],
            "rank": row["rank"],
            "designation": row["designation"],
            "grade": row["grade"],
            "ci95": ci95,
            "tiers": tiers,
            "weighted_rates": wr if levels and row["value"] is not None else {},
            "cast": row["cast"],
            "valid": row["valid"],
            "quota_shortfall": shortfall_total,
            "missing": list(row["missing"]),
            "refused": row["refused"],
            "below_threshold": row["below_threshold"],
            "inseparable_from": list(row["inseparable"]),
            "deductions": row["deductions_pub"],
        }
        if scoring.rule == "satisfaction_rate":
            unit["satisfaction_rate"] = row["rate_pub"]
            unit["rate_deduction"] = row["rate_deduction_pub"]
        if scoring.rule == "composite":
            unit["methods"] = {
                m["method"]: {
                    "score": m["score"],
                    "weight": m["weight"],
                    "applied_weight": m["applied_weight"],
                    "cast": m["cast"],
                    "valid": m["valid"],
                }
                for m in methods.get(code, [])
            }
        out_units.append(unit)

    ci_doc: dict[str, Any] = {"method": scoring.ci.method, "level": scoring.ci.level}
    if scoring.ci.method == "bootstrap":
        ci_doc |= {"resamples": scoring.ci.resamples, "seed": scoring.ci.seed, "stratified_by": "tier"}
    return {
        "campaign": spec.code,
        "computed_at": result.computed_at,
        "inputs_sha256": result.inputs_sha256,
        "spec_sha256": spec.sha256(),
        "rule": scoring.rule,
        "rule_letter": scoring.letter,
        "decimals": d,
        "rate_decimals": rd,
        "rounding": "half_away_from_zero",
        "ties": scoring.ties,
        "missing_tier": scoring.missing_tier,
        "ci": ci_doc,
        "units": out_units,
    }


def to_json(result: ScoreResult) -> str:
    """The JSON of contract.md; byte-identical for the same inputs and `computed_at`."""
    return json.dumps(document(result), ensure_ascii=False, indent=2) + "\n"


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_text(value: str) -> str:
    """A text cell Excel will not read as a formula (engineering-notes: prefix with ')."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def flat_rows(result: ScoreResult, lang: str | None = None) -> tuple[list[str], list[list[Any]]]:
    """One row per unit with every published column; headers in the campaign's language."""
    spec = result.spec
    lab = labels(spec, lang)
    language = "en" if (lang or spec.lang) == "en" else "zh-CN"
    doc = document(result)
    levels = spec.scale.levels
    tier_keys: list[str] = []
    for unit in doc["units"]:
        tier_keys += [k for k in unit["tiers"] if k not in tier_keys]
    tier_names = {t.code: _label(t.zh, t.en, language) for t in spec.tiers}

    def tier_label(key: str) -> str:
        tier, _, method = key.partition("@")
        return tier_names.get(tier, tier) + (f"({method})" if method else "")

    headers = [lab["group"], lab["rank"], lab["unit"], lab["name"], lab["score"], lab["ci_lo"], lab["ci_hi"]]
    headers += [
        lab["designation"],
        lab["grade"],
        lab["below_threshold"],
        lab["cast"],
        lab["valid"],
        lab["shortfall"],
    ]
    if spec.scoring.rule == "satisfaction_rate":
        headers.append(lab["rate"])
    headers.append(lab["deductions"])
    headers += [f"{lab['weighted']}{_label(lv.zh, lv.en, language)}" for lv in levels]
    for key in tier_keys:
        name = tier_label(key)
        headers += [f"{name}{lab['cast']}", f"{name}{lab['valid']}", f"{name}{lab['score']}"]
        headers += [f"{name}{_label(lv.zh, lv.en, language)}" for lv in levels]
    rows: list[list[Any]] = []
    for u in doc["units"]:
        ci = u["ci95"] or [None, None]
        row: list[Any] = [u["group"], u["rank"], u["unit"], u["name"], u["score"], ci[0], ci[1]]
        row += [
            lab[u["designation"]] if u["designation"] else None,
            _grade_label(spec, u["grade"], language),
            u["below_threshold"],
            u["cast"],
            u["valid"],
            u["quota_shortfall"],
        ]
        if spec.scoring.rule == "satisfaction_rate":
            row.append(u["satisfaction_rate"])
        row.append(u["deductions"])
        row += [u["weighted_rates"].get(lv.code) for lv in levels]
        for key in tier_keys:
            t = u["tiers"].get(key)
            row += [None, None, None] if t is None else [t["cast"], t["valid"], t["score"]]
            row += [None if t is None else t["rates"].get(lv.code) for lv in levels]
        rows.append(row)
    return headers, rows


def _grade_label(spec: CampaignSpec, code: str | None, lang: str) -> str | None:
    if code is None:
        return None
    band = next((b for b in spec.scoring.grades if b.code == code), None)
    return code if band is None else _label(band.zh, band.en, lang)


def to_csv(result: ScoreResult, lang: str | None = None) -> str:
    """CSV (UTF-8, `\\n` line ends): text cells made formula-safe; numbers as published."""
    headers, rows = flat_rows(result, lang)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([safe_text(h) for h in headers])
    for row in rows:
        writer.writerow(
            ["" if v is None else safe_text(v) if isinstance(v, str) else _csv_number(v) for v in row]
        )
    return buffer.getvalue()


def _csv_number(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _fmt(value: float | None, decimals: int) -> str:
    return "—" if value is None else f"{value:.{decimals}f}"


def build_tables(result: ScoreResult, lang: str | None = None) -> list[Table]:
    """One rich table per group, in published order."""
    spec = result.spec
    lab = labels(spec, lang)
    language = "en" if (lang or spec.lang) == "en" else "zh-CN"
    doc = document(result)
    d, rd = spec.scoring.decimals, spec.scoring.rate_decimals
    groups = {g.code: _label(g.zh, g.en, language) for g in spec.groups}
    tiers = list(spec.tiers)
    out: list[Table] = []
    for group in sorted({u["group"] for u in doc["units"]}):
        table = Table(title=f"{spec.name} · {groups.get(group, group)} (rule {spec.scoring.letter})")
        table.add_column(lab["rank"], justify="right")
        table.add_column(lab["unit"])
        table.add_column(lab["name"])
        tier_keys = list(dict.fromkeys(k for u in doc["units"] if u["group"] == group for k in u["tiers"]))
        for key in tier_keys:
            tier = next((t for t in tiers if t.code == key.partition("@")[0]), None)
            name = key if tier is None else _label(tier.zh, tier.en, language)
            table.add_column(name + (f"@{key.partition('@')[2]}" if "@" in key else ""), justify="right")
        if spec.scoring.rule == "satisfaction_rate":
            table.add_column(lab["rate"], justify="right")
        table.add_column(lab["score"], justify="right")
        table.add_column(lab["ci95"], justify="right")
        table.add_column(lab["designation"])
        if spec.scoring.grades:
            table.add_column(lab["grade"])
        table.add_column(lab["shortfall"], justify="right")
        tier_decimals = rd if spec.scoring.value_rule == "satisfaction_rate" else d
        for u in (u for u in doc["units"] if u["group"] == group):
            cells = [str(u["rank"] or "—"), u["unit"], u["name"]]
            cells += [
                _fmt(u["tiers"][k]["score"] if k in u["tiers"] else None, tier_decimals) for k in tier_keys
            ]
            if spec.scoring.rule == "satisfaction_rate":
                rate = u["satisfaction_rate"]
                cells.append("—" if rate is None else f"{rate * 100:.{max(rd - 2, 0)}f}%")
            score = _fmt(u["score"], d)
            if u["below_threshold"]:
                score += " !"
            cells.append(score)
            cells.append("—" if u["ci95"] is None else f"[{_fmt(u['ci95'][0], d)}, {_fmt(u['ci95'][1], d)}]")
            note = lab[u["designation"]] if u["designation"] else ""
            if u["refused"]:
                note = lab["refused"]
            cells.append(note)
            if spec.scoring.grades:
                cells.append(_grade_label(spec, u["grade"], language) or "")
            cells.append(str(u["quota_shortfall"]))
            table.add_row(*cells)
        table.caption = (
            f"inputs_sha256 {result.inputs_sha256[:16]}… · {spec.scoring.missing_tier} · "
            f"ties {spec.scoring.ties} · half-up {d}"
        )
        out.append(table)
    return out


def render_table(result: ScoreResult, console: Console | None = None, lang: str | None = None) -> None:
    """Print the ranked table of every group (the demo and `collect score` call this)."""
    console = console or Console()
    for table in build_tables(result, lang):
        console.print(table)


def table_text(result: ScoreResult, width: int = 160, lang: str | None = None) -> str:
    """The ranked tables as plain text (tests, logs)."""
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    render_table(result, console, lang)
    return console.export_text()


def explain(result: ScoreResult, unit: str) -> str:
    """
    Each step of one unit's score, as an operator would check it by hand: counts per tier and
    level, rates, weights, values, tier scores, deductions, the rounding and the rank.

    Raises:
        KeyError: the campaign has no such unit.
    """
    spec, scoring = result.spec, result.spec.scoring
    if spec.unit(unit) is None:
        raise KeyError(unit)
    d, rd = scoring.decimals, scoring.rate_decimals
    doc = next(u for u in document(result)["units"] if u["unit"] == unit)
    f = result.frames
    values = {lv.code: lv.value for lv in spec.scale.levels}
    lines = [
        f"{spec.code} · {unit} {doc['name']} · group {doc['group']}",
        f"rule {scoring.letter} ({scoring.rule}); missing tiers: {scoring.missing_tier}; "
        f"rounding: half away from zero to {d} decimals; ties: {scoring.ties}",
        f"inputs_sha256 {result.inputs_sha256}",
        "",
    ]
    rule = scoring.value_rule
    if rule in ("level_rates", "aspect_value_sum"):
        lines.append("level values: " + ", ".join(f"{k}={v:g}" for k, v in values.items()))
    elif rule == "mean_points":
        lines.append(f"points × {scoring.points.multiplier:g}; don't know excluded")
    else:
        satisfied = (
            ", ".join(spec.scale.satisfied)
            if spec.scale.kind == "levels"
            else f"points ≥ {spec.scale.satisfied_min_points}"
        )
        lines.append(f"satisfied: {satisfied}")
    counts = f.counts.filter(pl.col("unit") == unit)
    # Levels in the scale's order (满意 first), points in numeric order, "don't know" last.
    level_order = {code: i for i, code in enumerate(spec.scale.level_codes)}
    order_expr = (
        pl.col("answer").replace_strict(level_order, default=None, return_dtype=pl.Int64)
        if level_order
        else pl.col("answer").cast(pl.Int64, strict=False)
    ).fill_null(1_000_000)
    parts = f.parts.filter(pl.col("unit") == unit)
    aggregate = "sum" if rule == "aspect_value_sum" else "mean"
    for p in parts.iter_rows(named=True):
        head = f"tier {p['tier']}" + (f" @ method {p['method']}" if p["method"] != SINGLE_METHOD else "")
        lines.append("")
        lines.append(
            f"{head}: cast {p['cast']}, valid {p['valid']}, "
            f"quota {p['quota'] if p['quota'] is not None else '—'}, "
            f"shortfall {p['shortfall'] if p['shortfall'] is not None else '—'}"
        )
        mine = counts.filter((pl.col("method") == p["method"]) & (pl.col("tier") == p["tier"]))
        for aspect in sorted(set(mine["aspect"].to_list())):
            rows = mine.filter(pl.col("aspect") == aspect).sort(order_expr, "answer")
            tally = ", ".join(f"{r['answer']} {r['n']}" for r in rows.iter_rows(named=True))
            valid = rows.filter(pl.col("answer") != "dont_know")["n"].sum()
            lines.append(f"  aspect {aspect}: {tally} (valid {valid})")
            if rule in ("level_rates", "aspect_value_sum") and valid:
                parts_text = " + ".join(
                    f"{values[r['answer']]:g}×{r['n']}"
                    for r in rows.iter_rows(named=True)
                    if r["answer"] in values
                )
                total = sum(
                    values[r["answer"]] * r["n"] for r in rows.iter_rows(named=True) if r["answer"] in values
                )
                lines.append(f"    mean value = ({parts_text}) ÷ {valid} = {total / valid:.6f}")
        if p["score"] is None:
            lines.append("  tier score: none (no valid ballots)")
        else:
            lines.append(f"  tier score ({aggregate} over {p['n_aspects']} aspect(s)) = {p['score']:.6f}")
        rates = f.rates.filter(
            (pl.col("unit") == unit) & (pl.col("method") == p["method"]) & (pl.col("tier") == p["tier"])
        ).sort(pl.col("level").replace_strict(level_order, default=None, return_dtype=pl.Int64))
        if rates.height:
            lines.append(
                "  rates: "
                + ", ".join(f"{r['level']} {r['rate']:.{rd}f}" for r in rates.iter_rows(named=True))
            )
        weight = p["eff_weight"]
        lines.append(f"  weight stated {p['weight']:g}, applied {'—' if weight is None else f'{weight:.6f}'}")
    if doc["weighted_rates"]:
        lines.append("")
        lines.append(
            "weighted rates: " + ", ".join(f"{k} {v:.{rd}f}" for k, v in doc["weighted_rates"].items())
        )
    if scoring.rule == "composite":
        lines.append("")
        for m, info in doc["methods"].items():
            lines.append(
                f"method {m}: score {info['score']}, weight {info['weight']:g}, "
                f"applied {info['applied_weight']}"
            )
    row = result.units.filter(pl.col("unit") == unit).row(0, named=True)
    lines.append("")
    if row["value"] is None:
        reason = "refused: missing " if row["refused"] else "no score: missing "
        lines.append(reason + ", ".join(row["missing"]))
    else:
        lines.append(f"weighted value = Σ applied weight × tier score = {row['value']:.6f}")
        if scoring.rule == "satisfaction_rate":
            rdd = scoring.rate_deduction
            lines.append(
                f"satisfaction rate {row['rate']:.6f} (threshold {rdd.threshold:g}); percentage points below "
                f"treated '{rdd.fraction}', × {rdd.points_per_point:g} "
                f"→ deduction {row['rate_deduction']:.6f}; "
                f"{rdd.base:g} − {row['rate_deduction']:.6f}"
            )
        if result.deductions is not None:
            mine = result.deductions.filter(pl.col("unit") == unit)
            for r in mine.iter_rows(named=True):
                lines.append(f"deduction {r['date']} {r['kind']}: −{r['points']:g} ({r['note']})")
        lines.append(f"deductions total {row['deductions']:g}")
        lines.append(
            f"score = {row['score']:.8f} → published {_fmt(row['score_pub'], d)} (half away from zero)"
        )
        ci = doc["ci95"]
        if ci is not None:
            lines.append(
                f"{scoring.ci.level:.0%} interval ({scoring.ci.method}): [{_fmt(ci[0], d)}, {_fmt(ci[1], d)}]"
            )
        lines.append(
            f"rank {doc['rank']} in group {doc['group']}; designation {doc['designation'] or '—'}; "
            f"grade {doc['grade'] or '—'}; below threshold {doc['below_threshold']}"
        )
        if doc["inseparable_from"]:
            lines.append("not separable by this data from: " + ", ".join(doc["inseparable_from"]))
    return "\n".join(lines) + "\n"
