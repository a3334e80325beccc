"""The HTML report: the ranked crashes as a table and a plotly chart of dumps over time,
one bar colour per crash. plotly.js is embedded in the page, so it opens offline."""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path

from pmdb.triage.group import Crash
from pmdb.triage.record import Record
from pmdb.triage.render import when

CHART_CRASHES = 12       # crashes drawn one by one; the rest are summed as "other"


def chart_html(crashes: list[Crash], records: list[Record]) -> str:
    """A stacked histogram of dump times by crash (plotly, its JS inline)."""
    import plotly.graph_objects as go

    by_path = {r["path"]: r for r in records}
    fig = go.Figure()
    shown = crashes[:CHART_CRASHES]
    rest = [p for c in crashes[CHART_CRASHES:] for p in c.dumps]
    series = [(f"#{c.rank} {c.function or '?'} ({c.count})", c.dumps) for c in shown]
    if rest:
        series.append((f"other ({len(rest)})", rest))
    for name, paths in series:
        times = [by_path[p]["time"] for p in paths if by_path.get(p, {}).get("time") is not None]
        fig.add_trace(go.Histogram(x=[dt.datetime.fromtimestamp(t, dt.UTC) for t in times], name=name))
    fig.update_layout(barmode="stack", title="Crashes over time (UTC)", xaxis_title="dump time",
                      yaxis_title="dumps", legend_title="crash", height=420, margin={"t": 50, "b": 40})
    return str(fig.to_html(full_html=False, include_plotlyjs=True))


def _crash_rows(crashes: list[Crash]) -> str:
    rows = []
    for c in crashes:
        cells = [str(c.rank), str(c.count), c.crash_line or c.function or "?",
                 " &lt; ".join(html.escape(f) for f in c.signature) or "(no stack)",
                 ", ".join(c.kernels), ", ".join(c.hosts), when(c.first_seen), when(c.last_seen), c.representative]
        escaped = [cells[0], cells[1], html.escape(cells[2]), cells[3],
                   *(html.escape(x) for x in cells[4:])]
        rows.append(f'<tr class="family{c.family % 2}">' + "".join(f"<td>{x}</td>" for x in escaped) + "</tr>")
    return "\n".join(rows)


def _error_rows(errors: list[Record]) -> str:
    return "\n".join(f"<tr><td>{html.escape(r['path'])}</td><td>{html.escape(r.get('error') or '')}</td></tr>"
                     for r in errors)


_STYLE = """body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top;text-align:left}
tr.family1{background:#f4f6fa}th{background:#e8e8e8}"""


def write_report(path: str, crashes: list[Crash], errors: list[Record], records: list[Record]) -> None:
    """Write the whole report to ``path`` (one self-contained HTML file)."""
    head = "".join(f"<th>{h}</th>" for h in ("#", "dumps", "crash", "signature", "kernels / programs",
                                              "hosts", "first seen", "last seen", "representative dump"))
    body = [f"<h1>pmdb triage: {len(crashes)} distinct crashes in {len(records)} dumps</h1>",
            chart_html(crashes, records),
            f"<h2>Crashes, most frequent first</h2><table><tr>{head}</tr>{_crash_rows(crashes)}</table>"]
    if errors:
        body.append(f"<h2>{len(errors)} dumps could not be triaged</h2>"
                    f"<table><tr><th>dump</th><th>error</th></tr>{_error_rows(errors)}</table>")
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>pmdb triage</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n")
    Path(path).write_text(page, encoding="utf-8")
