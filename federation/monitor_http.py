"""The bank's monitoring dashboard: one HTML page on loopback (stdlib ``http.server``).

``GET /`` renders, from the monitoring folder as it is on disk at the time of the request
(so it shows a period as soon as it is complete), the current period, borrowers per warning
level, that period's alerts, the score distribution, the drift (PSI of the points against
the first period) as inline SVG and, with ``--baseline-month``, the PSI of each of the bank's
model indicators against the training period (the grid keeps its own, never sent); the
page reloads itself every 10 s. ``GET /summary.json``
gives the periods' summaries. Anything else is 404. Only loopback addresses are accepted.
"""

from __future__ import annotations

import html
import ipaddress
import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from federation.protocol.errors import ConfigError
from parties.monitoring import LEVELS, UNRATED, MonitorStore

COLORS = {"normal": "#4c9a2a", "watch": "#e0a100", "alert": "#c62828", UNRATED: "#777777"}


def _bars(values: list[float], labels: list[str], color: str, w: int = 480,
          h: int = 160) -> str:
    """Bars with a y axis (0 and the largest value), each bar's value above it and the
    first and last labels under the axis."""
    top = max(values, default=0.0) or 1.0
    n = max(len(values), 1)
    axis = 44  # room for the y axis' labels
    bw = (w - axis) / n
    y0 = 14  # room for the value over the tallest bar
    parts = [f'<svg width="{w}" height="{h + y0 + 20}" role="img">',
             f'<line x1="{axis - 2}" y1="{y0}" x2="{axis - 2}" y2="{y0 + h}" stroke="#444"/>',
             f'<line x1="{axis - 2}" y1="{y0 + h}" x2="{w}" y2="{y0 + h}" stroke="#444"/>',
             f'<text x="{axis - 6}" y="{y0 + 4}" font-size="10" '
             f'text-anchor="end">{top:.3g}</text>',
             f'<text x="{axis - 6}" y="{y0 + h}" font-size="10" text-anchor="end">0</text>']
    for i, (v, label) in enumerate(zip(values, labels, strict=True)):
        bh = h * v / top
        x = axis + i * bw
        parts.append(f'<rect x="{x + 1:.1f}" y="{y0 + h - bh:.1f}" width="{bw - 2:.1f}" '
                     f'height="{bh:.1f}" fill="{color}"><title>{html.escape(label)}: '
                     f'{v:g}</title></rect>')
        if v:
            parts.append(f'<text class="bar-value" x="{x + bw / 2:.1f}" '
                         f'y="{y0 + h - bh - 2:.1f}" font-size="9" '
                         f'text-anchor="middle">{v:.3g}</text>')
    if labels:
        parts.append(f'<text x="{axis}" y="{y0 + h + 15}" font-size="11">'
                     f'{html.escape(labels[0])}</text>')
        parts.append(f'<text x="{w}" y="{y0 + h + 15}" font-size="11" text-anchor="end">'
                     f'{html.escape(labels[-1])}</text>')
    return "".join(parts) + "</svg>"


def _alert_rows(alerts: list[dict[str, str]]) -> str:
    """One table row per borrower: its alerts' kinds and changes together."""
    by_id: dict[str, list[dict[str, str]]] = {}
    for a in alerts:
        by_id.setdefault(a["id"], []).append(a)
    return "".join(
        f"<tr><td>{html.escape(ident)}</td>"
        f"<td>{html.escape(', '.join(a['kind'] for a in items))}</td>"
        f"<td>{html.escape('; '.join(a['before'] + ' -> ' + a['after'] for a in items))}</td>"
        "</tr>" for ident, items in by_id.items())


def render(store: MonitorStore) -> str:
    """The dashboard page."""
    summaries = store.summaries()
    if not summaries:
        body = "<p>No period completed yet.</p>"
        return _page("waiting", body)
    last = summaries[-1]
    period = str(last["period"])
    levels = last["levels"]
    assert isinstance(levels, dict)
    alerts = [a for a in store.alerts() if a["period"] == period]
    rows = _alert_rows(alerts)
    borrowers = len({a["id"] for a in alerts})
    level_rows = "".join(f'<tr><td style="color:{COLORS[k]}">{k}</td>'
                         f'<td class="count" id="level-{k}">{levels.get(k, 0)}</td></tr>'
                         for k in LEVELS)
    hist = [float(x) for x in last["points_hist"]]  # type: ignore[attr-defined]
    edges = [float(x) for x in last["points_edges"]]  # type: ignore[attr-defined]
    labels = [f"{a:.0f}-{b:.0f}" for a, b in zip(edges, edges[1:])]
    drift = [(str(s["period"]), float(str(s["psi_points"] or 0.0))) for s in summaries[1:]]
    drift_chart = _bars([v for _, v in drift], [p for p, _ in drift], "#5566aa") \
        if drift else "<p>Drift needs two periods.</p>"
    drift_chart += "<p>" + ", ".join(f"{p}: {v:.3f}" for p, v in drift) + \
        " (below 0.1 stable, above 0.25 shifted)</p>"
    body = (
        f'<h2>Period <span id="period">{html.escape(period)}</span></h2>'
        f'<p>{last["borrowers"]} borrowers in the active book, {last["no_grid_record"]} with '
        f'no grid record. Alerts this period: <b id="alert-count">{len(alerts)}</b>, for '
        f'<b id="alert-borrowers">{borrowers}</b> borrowers.</p>'
        f"<h3>Warning levels</h3><table>{level_rows}</table>"
        f"<h3>Score distribution (borrowers per points bin)</h3>"
        f"{_bars(hist, labels, '#2a6f9a')}"
        f"<h3>Drift: PSI of the points against {html.escape(str(summaries[0]['period']))}</h3>"
        f"{drift_chart}"
        f"{_indicator_drift(last)}"
        f'<h3>Alerts of {html.escape(period)}</h3><table id="alerts"><tr><th>id</th>'
        f"<th>alerts</th><th>before -> after</th></tr>{rows}</table>")
    return _page(period, body)


def _indicator_drift(last: dict[str, object]) -> str:
    """The bank's indicators' PSI against the training period (a table and bars)."""
    psi = last.get("psi_indicators")
    if not isinstance(psi, dict) or not psi:
        return ""
    values = {str(k): (math.nan if v is None else float(v)) for k, v in psi.items()}
    rows = "".join(
        f'<tr><td>{html.escape(k)}</td><td class="psi"{_shifted(v)}>'
        f'{"-" if math.isnan(v) else f"{v:.3f}"}</td></tr>' for k, v in values.items())
    chart = _bars([0.0 if math.isnan(v) else v for v in values.values()], list(values),
                  "#8a5a9a")
    return (f"<h3>Drift of the bank's model indicators against "
            f"{html.escape(str(last.get('drift_baseline', '')))} (PSI)</h3>{chart}"
            f'<table id="drift-indicators"><tr><th>indicator</th><th>PSI</th></tr>{rows}'
            "</table>")


def _shifted(v: float) -> str:
    return ' style="color:#c62828"' if v > 0.25 else ""


def _page(title: str, body: str) -> str:
    return ("<!doctype html><html><head><meta charset='utf-8'>"
            "<meta http-equiv='refresh' content='10'>"
            f"<title>gridcredit monitor {html.escape(title)}</title><style>body{{font-family:"
            "sans-serif;margin:2em}td,th{padding:2px 10px;text-align:left}</style></head>"
            f"<body><h1>gridcredit post-loan monitoring</h1>{body}</body></html>")


def loopback_address(address: str) -> tuple[str, int]:
    """(host, port) of a loopback HOST:PORT.

    Raises
    ------
    ConfigError
        Not HOST:PORT, or the host is not a loopback address.
    """
    host, _, port = address.rpartition(":")
    try:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError("not loopback")
        return host, int(port)
    except ValueError as exc:
        raise ConfigError(f"--http {address!r}: expected a loopback HOST:PORT such as "
                          "127.0.0.1:8080") from exc


def start_dashboard(address: str, store: MonitorStore) -> ThreadingHTTPServer:
    """Serve the dashboard on ``address`` (HOST:PORT, loopback only) in a thread."""
    host, number = loopback_address(address)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path in ("/", "/index.html"):
                data, kind = render(store).encode(), "text/html; charset=utf-8"
            elif self.path == "/summary.json":
                data, kind = json.dumps(store.summaries()).encode(), "application/json"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    try:
        server = ThreadingHTTPServer((host, number), Handler)
    except OSError as exc:
        raise ConfigError(f"--http {address}: cannot listen on port {number} "
                          f"({exc.strerror or exc})") from None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
