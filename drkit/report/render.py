"""Rendering compliance reports: Markdown for tickets, one self-contained HTML file (inline CSS
and SVG charts, no scripts, no network) for auditors."""

from __future__ import annotations

import html
from typing import Any

from drkit.plan.durations import humanize_seconds


def _seconds(value: float | None) -> str:
    return "–" if value is None else humanize_seconds(value)


def _met(value: bool | None) -> str:
    return {True: "met", False: "BREACHED", None: "no objective"}[value]


def _summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    objectives = report["objectives"] or {}
    backups, drills, rpo = report["backups"], report["drills"], report["rpo"]
    due = "–" if backups["due"] is None else str(backups["due"])
    return [
        ("Backups due / taken / complete", f"{due} / {backups['taken']} / {backups['complete']}"),
        (
            "Copies per region",
            ", ".join(f"{k}: {v}" for k, v in report["copies_per_region"].items()) or "–",
        ),
        (
            "Encryption",
            f"{report['encryption']['cipher']}; keys: {', '.join(report['encryption']['key_names']) or '–'}",
        ),
        ("Drills run / passed", f"{drills['run']} / {drills['passed']}"),
        (
            "RTO p50 / p95 / max",
            f"{_seconds(drills['rto_p50_seconds'])} / {_seconds(drills['rto_p95_seconds'])} / {_seconds(drills['rto_max_seconds'])}",
        ),
        (
            "RTO objective",
            f"{_seconds(objectives.get('rto_seconds'))} ({_met(report['verdict']['rto_met'])})",
        ),
        ("Worst RPO", _seconds(rpo["worst_seconds"])),
        (
            "RPO objective",
            f"{_seconds(objectives.get('rpo_seconds'))} ({_met(report['verdict']['rpo_met'])})",
        ),
    ]


def render_markdown(reports: list[dict[str, Any]]) -> str:
    lines = ["# drkit compliance report", ""]
    for report in reports:
        period = report["period"]
        lines += [
            f"## Plan `{report['plan']}`",
            "",
            report["description"] or "",
            "",
            f"Period: {period['since']} to {period['until']}",
            "",
            "| measure | value |",
            "|---|---|",
        ]
        lines += [f"| {name} | {value} |" for name, value in _summary_rows(report)]
        lines += ["", "### Failures", ""]
        lines += [
            f"- {f['at']} {f['kind']} {f['outcome']}: {f['reason'] or '–'}"
            for f in report["failures"]
        ] or ["None."]
        lines += [
            "",
            "### Drills",
            "",
            "| when | snapshot | store | RTO | outcome |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {d['at']} | {d['snapshot_id']} | {d['store']} | {_seconds(d['rto_seconds'])} | {d['outcome']} |"
            for d in report["drills"]["series"]
        ]
        lines += [
            "",
            "### Evidence",
            "",
            "| snapshot | taken | status | stores | manifest sha256 |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {e['snapshot_id']} | {e['taken_at']} | {e['status']} | {', '.join(e['stores'])} | `{e['manifest_sha256'] or '–'}` |"
            for e in report["evidence"]
        ]
        lines.append("")
    return "\n".join(lines)


def _bar_chart(
    title: str, points: list[tuple[str, float | None]], objective: float | None, chart_id: str
) -> str:
    """An inline SVG bar chart with the objective as a dashed line."""
    width, height, left, bottom = 640, 200, 50, 30
    values = [v for _, v in points if v is not None]
    highest = max(values, default=0.0)
    # Scale to the data; include the objective only when it is within reach, otherwise the
    # bars of a healthy plan (seconds against an objective of an hour) would be invisible.
    on_scale = objective is not None and (not values or objective <= 4 * highest)
    top = max(highest, objective if on_scale and objective else 0.0, 1e-3) * 1.15
    bar = (width - left - 10) / max(len(points), 1)
    parts = [
        f'<svg id="{chart_id}" role="img" aria-label="{html.escape(title)}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">',
        f'<text x="{left}" y="14" class="title">{html.escape(title)}</text>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" class="axis"/>',
    ]
    for index, (label, value) in enumerate(points):
        if value is None:
            continue
        bar_height = (height - bottom - 20) * value / top
        x = left + index * bar + 2
        y = height - bottom - bar_height
        over = objective is not None and value > objective
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bar - 4, 1):.1f}" height="{bar_height:.1f}" '
            f'class="{"bar over" if over else "bar"}"><title>{html.escape(label)}: '
            f"{html.escape(humanize_seconds(value))}</title></rect>"
        )
    if objective is not None and not on_scale:
        parts.append(
            f'<text x="{width - 12}" y="30" text-anchor="end" class="label">'
            f"objective {html.escape(humanize_seconds(objective))} (far above every value)</text>"
        )
    elif objective is not None:
        y = height - bottom - (height - bottom - 20) * objective / top
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - 10}" y2="{y:.1f}" class="objective"/>'
        )
        parts.append(
            f'<text x="{width - 12}" y="{y - 4:.1f}" text-anchor="end" class="label">'
            f"objective {html.escape(humanize_seconds(objective))}</text>"
        )
    parts.append(f'<text x="4" y="{height - bottom:.0f}" class="label">0</text>')
    parts.append(
        f'<text x="4" y="30" class="label">{html.escape(humanize_seconds(top))}</text></svg>'
    )
    return "".join(parts)


CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:60rem}
table{border-collapse:collapse;margin:1rem 0}code{word-break:break-all}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}
.bar{fill:#4a7ebb}.bar.over{fill:#c0392b}.objective{stroke:#c0392b;stroke-dasharray:6 4}
.axis{stroke:#555}.title{font-weight:bold;font-size:13px}.label{font-size:11px;fill:#555}
.breached{color:#c0392b;font-weight:bold}.met{color:#1e7b34;font-weight:bold}code{font-size:.85em}
"""


def render_html(reports: list[dict[str, Any]]) -> str:
    body = []
    for report in reports:
        plan = html.escape(report["plan"])
        objectives = report["objectives"] or {}
        rows = "".join(
            f'<tr><th>{html.escape(name)}</th><td class="{_css_class(value)}">{html.escape(value)}</td></tr>'
            for name, value in _summary_rows(report)
        )
        rto_points = [(d["at"], d["rto_seconds"]) for d in report["drills"]["series"]]
        rpo_points = [(p["at"], p["gap_seconds"]) for p in report["rpo"]["series"]]
        failures = (
            "".join(
                f"<li>{html.escape(f['at'])} {html.escape(f['kind'])} {html.escape(f['outcome'])}: "
                f"{html.escape(f['reason'] or '–')}</li>"
                for f in report["failures"]
            )
            or "<li>None.</li>"
        )
        evidence = "".join(
            f"<tr><td>{html.escape(e['snapshot_id'])}</td><td>{html.escape(e['taken_at'])}</td>"
            f"<td>{html.escape(e['status'])}</td><td>{html.escape(', '.join(e['stores']))}</td>"
            f"<td><code>{html.escape(e['manifest_sha256'] or '–')}</code></td></tr>"
            for e in report["evidence"]
        )
        body.append(
            f'<section class="plan" data-plan="{plan}"><h2>Plan {plan}</h2>'
            f"<p>{html.escape(report['description'] or '')}</p>"
            f"<p>Period: {html.escape(report['period']['since'])} to {html.escape(report['period']['until'])}</p>"
            f'<table class="summary">{rows}</table>'
            + _bar_chart("RTO per drill", rto_points, objectives.get("rto_seconds"), f"rto-{plan}")
            + _bar_chart(
                "RPO: gap before each complete snapshot",
                rpo_points,
                objectives.get("rpo_seconds"),
                f"rpo-{plan}",
            )
            + f"<h3>Failures</h3><ul>{failures}</ul><h3>Evidence</h3><table class='evidence'>"
            "<tr><th>snapshot</th><th>taken</th><th>status</th><th>stores</th><th>manifest sha256</th></tr>"
            f"{evidence}</table></section>"
        )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>drkit compliance report</title>"
        f"<style>{CSS}</style></head><body><h1>drkit compliance report</h1>"
        + "".join(body)
        + "</body></html>\n"
    )


def _css_class(value: str) -> str:
    if "BREACHED" in value:
        return "breached"
    return "met" if "(met)" in value else ""
