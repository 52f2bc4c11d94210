"""
A self-contained HTML report: per group, a ranked bar chart (inline SVG, CI whiskers) and the
published table. No script, no CDN, no external font: it opens offline and prints as is.
"""

from __future__ import annotations

from html import escape
from typing import Any

from aggregate.publish import document, flat_rows, labels
from aggregate.result import ScoreResult

_CSS = """
body{font-family:"Noto Sans SC","Microsoft YaHei","PingFang SC",sans-serif;margin:2em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:1em 0}
th,td{border:1px solid #bbb;padding:.25em .5em}th{background:#ddebf7}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.meta{color:#555;font-size:.85em}.top{color:#1a7f37}.bottom{color:#b42318}
svg text{font-size:12px}
"""


def _chart(units: list[dict[str, Any]], low: float, high: float, decimals: int) -> str:
    """Horizontal bars, one per ranked unit, with the interval drawn as a whisker."""
    label_w, bar_w, row_h, pad = 170, 480, 22, 8
    height = pad * 2 + row_h * max(1, len(units)) + 20
    span = (high - low) or 1.0

    def x(value: float) -> float:
        return label_w + bar_w * (min(max(value, low), high) - low) / span

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 90}" height="{height}" '
        f'role="img" aria-label="ranked scores">'
    ]
    for i, u in enumerate(units):
        y = pad + i * row_h
        colour = {"top": "#2da44e", "bottom": "#cf222e"}.get(u["designation"] or "", "#4f81bd")
        name = escape(f"{u['rank'] or '—'}. {u['name']}")
        parts.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{name}</text>')
        if u["score"] is None:
            parts.append(f'<text x="{label_w + 4}" y="{y + 15}">—</text>')
            continue
        parts.append(
            f'<rect x="{label_w}" y="{y + 3}" width="{x(u["score"]) - label_w:.1f}" '
            f'height="{row_h - 6}" fill="{colour}"/>'
        )
        if u["ci95"] is not None:
            lo, hi = x(u["ci95"][0]), x(u["ci95"][1])
            mid = y + row_h / 2
            parts.append(
                f'<path d="M{lo:.1f} {mid}H{hi:.1f}'
                f'M{lo:.1f} {mid - 5}V{mid + 5}M{hi:.1f} {mid - 5}V{mid + 5}" '
                'stroke="#222" stroke-width="1.2" fill="none"/>'
            )
        parts.append(f'<text x="{label_w + bar_w + 6}" y="{y + 15}">{u["score"]:.{decimals}f}</text>')
    axis_y = pad + row_h * max(1, len(units)) + 14
    parts.append(f'<text x="{label_w}" y="{axis_y}">{low:g}</text>')
    parts.append(f'<text x="{label_w + bar_w}" y="{axis_y}" text-anchor="end">{high:g}</text>')
    parts.append("</svg>")
    return "".join(parts)


def to_html(result: ScoreResult, lang: str | None = None) -> str:
    """The report as one HTML string (UTF-8)."""
    spec = result.spec
    lab = labels(spec, lang)
    language = "en" if (lang or spec.lang) == "en" else "zh-CN"
    doc = document(result)
    headers, rows = flat_rows(result, lang)
    d = spec.scoring.decimals
    scores = [u["score"] for u in doc["units"] if u["score"] is not None]
    bounds = [b for u in doc["units"] if u["ci95"] for b in u["ci95"]]
    low = min([0.0, *scores, *bounds])
    high = max([100.0 if max(scores, default=0) <= 100 else max(scores), *scores, *bounds])
    group_names = {g.code: (g.en if language == "en" and g.en else g.zh) for g in spec.groups}
    out = [
        "<!DOCTYPE html>",
        f'<html lang="{language}"><head><meta charset="utf-8">',
        f"<title>{escape(spec.name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(spec.name)}</h1>",
        f'<p class="meta">{escape(spec.code)} · rule {spec.scoring.letter} ({escape(spec.scoring.rule)}) · '
        f"{escape(spec.scoring.missing_tier)} · ties {escape(spec.scoring.ties)} · half-up, {d} decimals · "
        f"CI {escape(spec.scoring.ci.method)} {spec.scoring.ci.level:.0%}<br>"
        f"computed_at {escape(result.computed_at)} · "
        f"inputs_sha256 <code>{escape(result.inputs_sha256)}</code></p>",
    ]
    for group in sorted({u["group"] for u in doc["units"]}):
        units = [u for u in doc["units"] if u["group"] == group]
        out.append(f"<h2>{escape(group_names.get(group, group))}</h2>")
        out.append(_chart(units, low, high, d))
        out.append(
            "<table><thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in headers) + "</tr></thead><tbody>"
        )
        for row in (r for r in rows if r[0] == group):
            cells = []
            for value in row:
                if value is None:
                    cells.append("<td></td>")
                elif isinstance(value, (int, float)) and not isinstance(value, bool):
                    cells.append(f'<td class="n">{value}</td>')
                else:
                    css = (
                        ' class="top"'
                        if value == lab["top"]
                        else ' class="bottom"'
                        if value == lab["bottom"]
                        else ""
                    )
                    cells.append(f"<td{css}>{escape(str(value))}</td>")
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</tbody></table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
