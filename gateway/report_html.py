"""`agw report --html`: one self-contained page (inline CSS and SVG, no script, nothing fetched)
with the KPIs of :mod:`gateway.report` and three charts: the completion-time distribution, the
fallout rate over time and the top fallout reasons. Every text from the journal is escaped."""

from __future__ import annotations

import html
import math

from gateway.report import DIMENSIONS, HEADERS, Figures, Report, row

BAR = "#2b6cb0"
FALLOUT = "#c53030"
GRID = "#e2e8f0"

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#1a202c;background:#fff}
h1{font-size:22px;margin:0 0 4px} h2{font-size:16px;margin:28px 0 8px} .sub{color:#4a5568;font-size:13px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin-top:16px}
.card{border:1px solid #cbd5e0;border-radius:6px;padding:10px 14px;min-width:130px}
.card b{display:block;font-size:22px} .card span{font-size:12px;color:#4a5568}
table{border-collapse:collapse;font-size:13px} th,td{padding:4px 10px;border-bottom:1px solid #e2e8f0;text-align:right}
th:first-child,td:first-child{text-align:left} th{background:#f7fafc}
svg text{font-size:11px;fill:#2d3748}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _card(label: str, value: str) -> str:
    return f'<div class="card"><b>{_e(value)}</b><span>{_e(label)}</span></div>'


def _table(title: str, figures: tuple[Figures, ...] | list[Figures]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in (title, *HEADERS[1:]))
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row(f)) + "</tr>" for f in figures)
    return f"<table><tr>{head}</tr>{body}</table>"


def histogram_svg(values_s: tuple[float, ...], *, width: int = 640, height: int = 220, bins: int = 20) -> str:
    if not values_s:
        return '<p class="sub">no activation ended in this window</p>'
    top = max(values_s) or 1.0
    step = top / bins
    counts = [0] * bins
    for v in values_s:
        counts[min(bins - 1, int(v / step))] += 1
    most = max(counts)
    plot_h, bar_w = height - 40, (width - 50) / bins
    bars = []
    for i, c in enumerate(counts):
        h = plot_h * c / most
        bars.append(f'<rect x="{40 + i * bar_w:.1f}" y="{10 + plot_h - h:.1f}" width="{bar_w - 2:.1f}" '
                    f'height="{h:.1f}" fill="{BAR}"><title>{step * i:.2f}-{step * (i + 1):.2f} s: {c}</title></rect>')
    axis = (f'<line x1="40" y1="{10 + plot_h}" x2="{width - 10}" y2="{10 + plot_h}" stroke="#4a5568"/>'
            f'<text x="40" y="{height - 12}">0 s</text>'
            f'<text x="{width - 60}" y="{height - 12}">{top:.2f} s</text>'
            f'<text x="4" y="18">{most}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="completion time distribution">{axis}{"".join(bars)}</svg>')


def over_time_svg(report: Report, *, width: int = 640, height: int = 220) -> str:
    points = report.over_time
    if not points or not any(n for _, n, _ in points):
        return '<p class="sub">no activation in this window</p>'
    most = max(n for _, n, _ in points) or 1
    plot_h, slot = height - 40, (width - 50) / len(points)
    parts, line = [], []
    for i, (start, n, fell) in enumerate(points):
        x = 40 + i * slot
        h_all, h_out = plot_h * n / most, plot_h * fell / most
        parts.append(f'<rect x="{x:.1f}" y="{10 + plot_h - h_all:.1f}" width="{max(slot - 1, 1):.1f}" '
                     f'height="{h_all:.1f}" fill="{GRID}"/>')
        parts.append(f'<rect x="{x:.1f}" y="{10 + plot_h - h_out:.1f}" width="{max(slot - 1, 1):.1f}" '
                     f'height="{h_out:.1f}" fill="{FALLOUT}"><title>{_e(start.isoformat(timespec="minutes"))}: '
                     f'{fell} of {n} fell out</title></rect>')
        if n:
            line.append(f"{x + slot / 2:.1f},{10 + plot_h * (1 - fell / n):.1f}")
    rate = (f'<polyline points="{" ".join(line)}" fill="none" stroke="{FALLOUT}" stroke-width="2" '
            f'stroke-dasharray="4 3"/>') if len(line) > 1 else ""
    axis = (f'<line x1="40" y1="{10 + plot_h}" x2="{width - 10}" y2="{10 + plot_h}" stroke="#4a5568"/>'
            f'<text x="40" y="{height - 12}">{_e(points[0][0].isoformat(timespec="minutes"))}</text>'
            f'<text x="4" y="18">{most}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="fallout over time">{axis}{"".join(parts)}{rate}</svg>')


def reasons_svg(report: Report, *, width: int = 640) -> str:
    if not report.top_reasons:
        return '<p class="sub">no fallout in this window</p>'
    most = max(n for _, n in report.top_reasons)
    rows = []
    for i, (reason, n) in enumerate(report.top_reasons):
        y = 8 + i * 26
        w = max(2.0, (width - 60) * n / most)
        rows.append(f'<rect x="0" y="{y}" width="{w:.1f}" height="12" fill="{FALLOUT}"/>'
                    f'<text x="{w + 6:.1f}" y="{y + 10}">{n}</text>'
                    f'<text x="0" y="{y + 23}">{_e(reason[:110])}</text>')
    height = 12 + 26 * len(report.top_reasons)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="top fallout reasons">{"".join(rows)}</svg>')


def render(report: Report, *, title: str = "Activation KPIs") -> str:
    o = report.overall
    c = o.completion_s

    def secs(v: float | None) -> str:
        return "-" if v is None or math.isnan(v) else f"{v:.2f} s"

    cards = "".join([
        _card("activations", str(o.count)), _card("mean completion", secs(c.mean)), _card("p90 completion", secs(c.p90)),
        _card("fallout rate", f"{100 * o.fallout_rate:.1f}%"), _card("rollback rate", f"{100 * o.rollback_rate:.1f}%"),
        _card("first-time-right", f"{100 * o.first_time_right_rate:.1f}%"),
        _card("mean time in fallout", secs(o.fallout_s.mean)), _card("open fallout", str(o.open_fallout)),
    ])
    tables = "".join(f"<h2>By {_e(d.replace('_', ' '))}</h2>{_table(d, report.by[d])}" for d in DIMENSIONS)
    window = f"{report.since.isoformat(timespec='seconds')} .. {report.until.isoformat(timespec='seconds')}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<style>{_CSS}</style></head><body>
<h1>{_e(title)}</h1><div class="sub">activations created {_e(window)}</div>
<div class="cards">{cards}</div>
<h2>Completion time distribution</h2>{histogram_svg(report.completion_times_s)}
<h2>Fallout over time (per {"hour" if report.bucket.total_seconds() <= 3600 else "day"}; red: fell out)</h2>{over_time_svg(report)}
<h2>Top fallout reasons</h2>{reasons_svg(report)}
<h2>Overall</h2>{_table("overall", [o])}
{tables}
</body></html>
"""


__all__ = ["render"]
