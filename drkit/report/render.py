"""Rendering compliance reports: Markdown for tickets, one self-contained HTML file (inline CSS
and SVG charts, no scripts, no network) for auditors."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

from drkit.plan.durations import humanize_seconds
from drkit.report.controls import control_rows


def _seconds(value: float | None) -> str:
    return "–" if value is None else humanize_seconds(value)


def _when(text: str) -> str:
    """An ISO time as people read it in a report: minutes, UTC, no microseconds."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _met(value: bool | None) -> str:
    return {True: "met", False: "BREACHED", None: "no objective"}[value]


def _summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    objectives = report["objectives"] or {}
    backups, drills, rpo = report["backups"], report["drills"], report["rpo"]
    due = "–" if backups["due"] is None else str(backups["due"])
    return [
        (
            "Backups due / taken / succeeded / failed / interrupted",
            f"{due} / {backups['taken']} / {backups['succeeded']} / {backups['failed']} / "
            f"{backups['interrupted']} (from the run history)",
        ),
        ("Snapshots meeting the copy policy, still kept", str(backups["complete"])),
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


MARKDOWN_TITLE = "# drkit compliance report\n\n"


PITR_COLUMNS = ("source", "store", "recoverable from", "to", "lag", "problems")


def _pitr_rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per pitr source and store: the window, its lag, what is wrong."""
    rows: list[tuple[str, ...]] = []
    for entry in report.get("point_in_time") or []:
        for window in entry["windows"]:
            rows.append(
                (
                    f"{entry['source']} (RPO {_seconds(entry['rpo_seconds'])})",
                    str(window["store"]),
                    _when(window["from"]) if window["from"] else "–",
                    _when(window["to"]) if window["to"] else "–",
                    _seconds(window["lag_seconds"]),
                    "; ".join(window["problems"]) or "none",
                )
            )
    return rows


def render_markdown(reports: list[dict[str, Any]]) -> str:
    return MARKDOWN_TITLE + render_markdown_sections(reports)


def render_markdown_sections(reports: list[dict[str, Any]]) -> str:
    """The plans' sections, without the title (a long report is rendered plans at a time)."""
    lines: list[str] = []
    for report in reports:
        period = report["period"]
        lines += [
            f"## Plan `{report['plan']}`",
            "",
            report["description"] or "",
            "",
            f"Period: {_when(period['since'])} to {_when(period['until'])}",
            "",
            "| measure | value |",
            "|---|---|",
        ]
        lines += [f"| {name} | {value} |" for name, value in _summary_rows(report)]
        lines += [
            "",
            "### Controls",
            "",
            "| control | asks | drkit shows |",
            "|---|---|---|",
        ]
        lines += [f"| {c} | {asks} | {shows} |" for c, asks, shows in control_rows(report)]
        if pitr_rows := _pitr_rows(report):
            lines += [
                "",
                "### Point-in-time recovery (as of the period's end)",
                "",
                "| " + " | ".join(PITR_COLUMNS) + " |",
                "|" + "---|" * len(PITR_COLUMNS),
            ]
            lines += ["| " + " | ".join(row) + " |" for row in pitr_rows]
        lines += ["", "### Failures", ""]
        lines += [
            f"- {_when(f['at'])} {f['kind']} {f['outcome']}: {f['reason'] or '–'}"
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
            f"| {_when(d['at'])} | {d['snapshot_id']} | {d['store']} | {_seconds(d['rto_seconds'])} | {d['outcome']} |"
            for d in report["drills"]["series"]
        ]
        lines += [
            "",
            "### Evidence",
            "",
            _chain_note(report),
            "",
            _evidence_note(report),
            "",
            "| snapshot | taken | status | stores | manifest sha256 |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {e['snapshot_id']} | {_when(e['taken_at'])} | {e['status']} | {', '.join(e['stores'])} | `{e['manifest_sha256'] or '–'}` |"
            for e in report["evidence"]
        ]
        lines.append("")
    return "\n".join(lines)


def _chain_note(report: dict[str, Any]) -> str:
    """The signed evidence log's head, and how to check it (docs/evidence.md)."""
    log = report.get("evidence_log")
    if log is None:
        return "No signed evidence log: the plan has no `evidence:` section (see docs/evidence.md)."
    return (
        f"Signed evidence log: {log['count']} records, the newest at {_when(log['recorded_at'])}, "
        f"chain head sha256 `{log['head_sha256']}`. Anyone holding the public key can check "
        f"that no record was edited, removed or reordered: `{log['verify_command']}`."
    )


def _evidence_note(report: dict[str, Any]) -> str:
    """How many snapshots the period holds, and how to list those not shown."""
    shown, total = len(report["evidence"]), report.get("evidence_total", len(report["evidence"]))
    if shown >= total:
        return f"All {total} snapshots of the period."
    return (
        f"The newest {shown} of the period's {total} snapshots; "
        f"`drkit snapshots PLAN --json` lists every one."
    )


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
        f'<line x1="{left}" y1="20" x2="{left}" y2="{height - bottom}" class="axis"/>',
    ]
    parts += _date_labels([label for label, _ in points], left, width - 10, height - bottom + 14)
    for index, (label, value) in enumerate(points):
        if value is None:
            continue
        bar_height = (height - bottom - 20) * value / top
        x = left + index * bar + 2
        y = height - bottom - bar_height
        over = objective is not None and value > objective
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bar - 4, 1):.1f}" height="{bar_height:.1f}" '
            f'class="{"bar over" if over else "bar"}"><title>{html.escape(_when(label))}: '
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


def _date_labels(labels: list[str], left: float, right: float, y: float) -> list[str]:
    """The x axis: the first and last dates (and the middle one) under the bars."""
    if not labels:
        return [f'<text x="{left}" y="{y:.0f}" class="label">no data in the period</text>']
    chosen = {0: "start", len(labels) - 1: "end"}
    if len(labels) > 2:
        chosen[len(labels) // 2] = "middle"
    step = (right - left) / len(labels)
    return [
        f'<text x="{left + (index + 0.5) * step:.1f}" y="{y:.0f}" text-anchor="{anchor}" '
        f'class="label">{html.escape(_when(labels[index])[:10])}</text>'
        for index, anchor in sorted(chosen.items())
    ]


CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:60rem}
table{border-collapse:collapse;margin:1rem 0}code{word-break:break-all}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}
.bar{fill:#4a7ebb}.bar.over{fill:#c0392b}.objective{stroke:#c0392b;stroke-dasharray:6 4}
.axis{stroke:#555}.title{font-weight:bold;font-size:13px}.label{font-size:11px;fill:#555}
.breached{color:#c0392b;font-weight:bold}.met{color:#1e7b34;font-weight:bold}code{font-size:.85em}
"""


def render_html(reports: list[dict[str, Any]]) -> str:
    return HTML_HEAD + render_html_sections(reports) + HTML_TAIL


def render_html_sections(reports: list[dict[str, Any]]) -> str:
    """The plans' sections of the HTML page (between HTML_HEAD and HTML_TAIL)."""
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
                f"<li>{html.escape(_when(f['at']))} {html.escape(f['kind'])} {html.escape(f['outcome'])}: "
                f"{html.escape(f['reason'] or '–')}</li>"
                for f in report["failures"]
            )
            or "<li>None.</li>"
        )
        evidence = "".join(
            f"<tr><td>{html.escape(e['snapshot_id'])}</td><td>{html.escape(_when(e['taken_at']))}</td>"
            f"<td>{html.escape(e['status'])}</td><td>{html.escape(', '.join(e['stores']))}</td>"
            f"<td><code>{html.escape(e['manifest_sha256'] or '–')}</code></td></tr>"
            for e in report["evidence"]
        )
        drills = "".join(
            f"<tr><td>{html.escape(_when(d['at']))}</td><td>{html.escape(d['snapshot_id'])}</td>"
            f"<td>{html.escape(d['store'])}</td><td>{html.escape(_seconds(d['rto_seconds']))}</td>"
            f"<td>{html.escape(d['outcome'])}</td></tr>"
            for d in report["drills"]["series"]
        )
        controls = "".join(
            f"<tr><th>{html.escape(c)}</th><td>{html.escape(asks)}</td><td>{html.escape(shows)}</td></tr>"
            for c, asks, shows in control_rows(report)
        )
        pitr = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
            for row in _pitr_rows(report)
        )
        if pitr:
            header = "".join(f"<th>{html.escape(name)}</th>" for name in PITR_COLUMNS)
            pitr = (
                "<h3>Point-in-time recovery (as of the period's end)</h3>"
                f"<table class='pitr'><tr>{header}</tr>{pitr}</table>"
            )
        period = report["period"]
        body.append(
            f'<section class="plan" data-plan="{plan}"><h2>Plan {plan}</h2>'
            f"<p>{html.escape(report['description'] or '')}</p>"
            f"<p>Period: {html.escape(_when(period['since']))} to {html.escape(_when(period['until']))}</p>"
            f'<table class="summary">{rows}</table>'
            + _bar_chart("RTO per drill", rto_points, objectives.get("rto_seconds"), f"rto-{plan}")
            + _bar_chart(
                "RPO: the longest gap between complete snapshots, per day",
                rpo_points,
                objectives.get("rpo_seconds"),
                f"rpo-{plan}",
            )
            + "<h3>Controls</h3><table class='controls'><tr><th>control</th><th>asks</th>"
            f"<th>drkit shows</th></tr>{controls}</table>"
            "<h3>Drills</h3><table class='drills'><tr><th>when</th><th>snapshot</th><th>store</th>"
            f"<th>RTO</th><th>outcome</th></tr>{drills}</table>"
            f"{pitr}<h3>Failures</h3><ul>{failures}</ul><h3>Evidence</h3>"
            f"<p class='chain'>{html.escape(_chain_note(report))}</p>"
            f"<p>{html.escape(_evidence_note(report))}</p><table class='evidence'>"
            "<tr><th>snapshot</th><th>taken</th><th>status</th><th>stores</th><th>manifest sha256</th></tr>"
            f"{evidence}</table></section>"
        )
    return "".join(body)


HTML_HEAD = (
    '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
    "<title>drkit compliance report</title>"
    f"<style>{CSS}</style></head><body><h1>drkit compliance report</h1>"
)
HTML_TAIL = "</body></html>\n"


def _css_class(value: str) -> str:
    if "BREACHED" in value:
        return "breached"
    return "met" if "(met)" in value else ""
