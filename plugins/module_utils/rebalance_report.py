# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A rebalance as one self-contained HTML page: host loads before and after as bars, the
moves with their reasons, what blocked the rest, and the timings.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

``render(result, ...)`` takes the result of the rebalance role (``rebalance_result``) or of
the ``rebalance_plan`` module (a plan only: its ``hosts_after`` are the planned loads). The
page has no external assets (inline CSS, no scripts, no fonts or images to fetch), so it can
be mailed, attached to a job or opened offline. Every name and reason in it is escaped:
guest names and tags come from the guests.
"""

from __future__ import annotations

import html
import time

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1d2733;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #d5dbe3;padding-bottom:4px}
.summary{color:#46566a;margin:0 0 12px}.verdict{font-weight:600}
table{border-collapse:collapse;width:100%;margin:4px 0}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e6eaf0;
vertical-align:top}th{background:#f3f5f8;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.host{display:grid;grid-template-columns:90px 1fr 60px;gap:2px 10px;align-items:center;margin:10px 0}
.host .name{font-weight:600}.track{position:relative;height:14px;background:#eef1f5;border-radius:3px}
.bar{position:absolute;left:0;top:0;bottom:0;border-radius:3px}.before{background:#c2cad6}.after{background:#2f7de1}
.hot .after,.hot.before{background:#d9534f}.limit{position:absolute;top:-3px;bottom:-3px;border-left:2px dashed #d9534f}
.label{font-size:12px;color:#46566a}.ok{color:#1e7b34}.bad{color:#b52b27}.muted{color:#7a8796}
.legend span{display:inline-block;width:12px;height:10px;margin:0 4px 0 12px;border-radius:2px;vertical-align:middle}
"""


def _text(value):
    return html.escape("" if value is None else str(value), quote=True)


def _percent(value):
    return 0.0 if value is None else max(0.0, float(value))


def render(result, cpu_high=None, memory_high=None, title="Rebalance report", now=None):
    """The whole page as a string."""
    hosts_before = result.get("hosts_before") or []
    # the role's result says why it stopped and holds measured loads after; a plan has neither
    carried_out = "stopped" in result
    hosts_after = result.get("hosts_after") or []
    after = {host["name"]: host for host in hosts_after}
    summary = result.get("summary") or {}
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(now))
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             "<title>%s</title><style>%s</style></head><body>" % (_text(title), _STYLE),
             "<h1>%s</h1>" % _text(title),
             '<p class="summary">%s &middot; policy %s &middot; %s</p>' % (
                 _text(stamp), _text(result.get("policy") or summary.get("policy")), _text(summary.get("message"))),
             _verdict(result, carried_out)]
    parts.append(_loads(hosts_before, after, carried_out, cpu_high, memory_high))
    parts.append(_moves(result, carried_out))
    parts.append(_growth(result))
    parts.append(_blocked(result))
    parts.append(_timings(result))
    parts.append("</body></html>")
    return "\n".join(part for part in parts if part)


def _verdict(result, carried_out):
    if not carried_out:
        return '<p class="verdict">A plan only: nothing was moved; the loads after are the planned ones.</p>'
    failed = len(result.get("failures") or []) + len(result.get("grow_failures") or [])
    css = "bad" if failed else "ok"
    moved = len(result.get("moved") or [])
    text = "%d of %d planned guest(s) moved; %s" % (moved, len(result.get("plan") or []), result.get("stopped"))
    if result.get("dry_run"):
        text = "Dry run: nothing was moved. " + text
    return '<p class="verdict %s">%s</p>' % (css, _text(text))


def _bar(css, percent, label):
    return '<div class="bar %s" style="width:%.1f%%" title="%s"></div>' % (css, min(percent, 100.0), _text(label))


def _limit(percent):
    return '' if percent is None else '<div class="limit" style="left:%.1f%%" title="limit %g %%"></div>' % (
        min(_percent(percent), 100.0), float(percent))


def _loads(hosts_before, after, measured, cpu_high, memory_high):
    if not hosts_before:
        return ""
    rows = ["<h2>Host load, before and %s</h2>" % ("after" if measured else "as planned"),
            '<p class="legend label">CPU and memory in percent of the host:<span class="before"></span>before'
            '<span class="after"></span>%s<span style="border-left:2px dashed #d9534f;width:0"></span>limit</p>'
            % ("after" if measured else "planned")]
    for host in hosts_before:
        later = after.get(host["name"], host)
        status = later.get("status", "")
        for metric, limit in (("cpu_percent", cpu_high), ("memory_percent", memory_high)):
            first, second = _percent(host.get(metric)), _percent(later.get(metric))
            label = "CPU" if metric == "cpu_percent" else "memory"
            name = '<div class="name">%s</div>' % _text(host["name"]) if metric == "cpu_percent" else "<div></div>"
            hot = " hot" if limit is not None and second > float(limit) else ""
            rows.append(
                '<div class="host%s" data-host="%s" data-metric="%s">%s<div>'
                '<div class="track">%s%s</div><div class="track" style="margin-top:2px">%s%s</div>'
                '<div class="label">%s %.1f %% &rarr; %.1f %%%s</div></div><div class="label">%s</div></div>'
                % (hot, _text(host["name"]), label, name,
                   _bar("before", first, "%s before: %.1f %%" % (label, first)), _limit(limit),
                   _bar("after", second, "%s after: %.1f %%" % (label, second)), _limit(limit),
                   label, first, second, "" if metric != "cpu_percent" else
                   " &middot; guests %s &rarr; %s" % (_text(host.get("guests")), _text(later.get("guests"))),
                   _text(status) if metric == "cpu_percent" else ""))
    return "\n".join(rows)


def _moves(result, carried_out):
    plan = result.get("plan") or []
    if not plan:
        return "<h2>Moves</h2><p class=\"muted\">No move was planned.</p>"
    moved_by_guest = {item["guest"]: item for item in result.get("moved") or []}
    failed = {item["guest"]: item for item in result.get("failures") or []}
    rows = ["<h2>Moves</h2><table><thead><tr><th>wave</th><th>guest</th><th>from</th><th>to</th><th>reason</th>"
            "<th>estimated</th><th>result</th></tr></thead><tbody>"]
    for move in plan:
        outcome = moved_by_guest.get(move["guest"])
        if move["guest"] in failed:
            cell = '<span class="bad">failed: %s</span>' % _text(failed[move["guest"]].get("error"))
        elif outcome:
            where = "" if outcome.get("destination") == move.get("destination") else " to %s" % _text(outcome.get("destination"))
            cell = '<span class="ok">moved%s in %.1f s</span>' % (where, (outcome.get("elapsed_ms") or 0) / 1000.0)
        else:
            cell = '<span class="muted">%s</span>' % ("not run" if carried_out else "planned")
        rows.append('<tr><td class="num">%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td class="num">%.1f s</td>'
                    '<td>%s</td></tr>' % (_text(move.get("wave")), _text(move["guest"]), _text(move.get("source") or "(new)"),
                                          _text(move.get("destination")), _text(move.get("reason")),
                                          float(move.get("estimated_seconds") or 0), cell))
    # later waves are planned anew: moves the first plan did not have
    planned = {move["guest"] for move in plan}
    for item in result.get("moved") or []:
        if item["guest"] not in planned:
            rows.append('<tr><td class="num">%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td></td>'
                        '<td><span class="ok">moved in %.1f s (planned anew)</span></td></tr>'
                        % (_text(item.get("wave")), _text(item["guest"]), _text(item.get("source")),
                           _text(item.get("destination")), _text(item.get("reason")), (item.get("elapsed_ms") or 0) / 1000.0))
    rows.append("</tbody></table>")
    return "\n".join(rows)


def _growth(result):
    growth = result.get("grown") if result.get("grown") else result.get("growth") or []
    if not growth:
        return ""
    applied = bool(result.get("grown"))
    rows = ["<h2>Grown in place%s</h2><table><thead><tr><th>guest</th><th>host</th><th>vCPUs</th><th>memory</th>"
            "<th>reason</th></tr></thead><tbody>" % ("" if applied else " (planned)")]
    for item in growth:
        rows.append('<tr><td>%s</td><td>%s</td><td class="num">%s &rarr; %s</td><td class="num">%d &rarr; %d MiB</td>'
                    '<td>%s</td></tr>' % (_text(item["guest"]), _text(item.get("host")), _text(item.get("vcpus_from")),
                                          _text(item.get("vcpus")), int(item.get("memory_mb_from") or 0),
                                          int(item.get("memory_mb") or 0), _text(item.get("reason"))))
    rows.append("</tbody></table>")
    return "\n".join(rows)


def _blocked(result):
    problems = result.get("unresolved") or []
    refused = result.get("growth_refused") or []
    if not problems and not refused:
        return '<h2>What blocked moves</h2><p class="muted">Nothing: no problem was left.</p>'
    rows = ["<h2>What blocked moves</h2><table><thead><tr><th>host</th><th>problem</th><th>guest</th><th>why</th>"
            "</tr></thead><tbody>"]
    for problem in problems:
        guests = problem.get("guests") or [dict(guest="", reason=problem.get("reason"))]
        for index, item in enumerate(guests):
            rows.append("<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>" % (
                _text(problem.get("host") or "(new guests)") if index == 0 else "",
                _text(problem.get("problem")) if index == 0 else "", _text(item.get("guest")), _text(item.get("reason"))))
    for item in refused:
        rows.append("<tr><td>%s</td><td>cannot grow in place</td><td>%s</td><td>%s</td></tr>" % (
            _text(item.get("host")), _text(item.get("guest")), _text(item.get("reason"))))
    rows.append("</tbody></table>")
    return "\n".join(rows)


def _timings(result):
    summary = result.get("summary") or {}
    rows = [("planning", "%s ms" % summary["planning_ms"]) if "planning_ms" in summary else None,
            ("estimated migration time", "%s s" % summary["estimated_seconds"]) if "estimated_seconds" in summary else None,
            ("waves run", result.get("waves_run")) if "waves_run" in result else None]
    moved = result.get("moved") or []
    if moved:
        rows.append(("migrations", "%d, %.1f s in all, longest %.1f s" % (
            len(moved), sum((item.get("elapsed_ms") or 0) for item in moved) / 1000.0,
            max((item.get("elapsed_ms") or 0) for item in moved) / 1000.0)))
    unreachable = summary.get("unreachable") or []
    if unreachable:
        rows.append(("unreachable hypervisors", ", ".join(unreachable)))
    rows = [row for row in rows if row]
    if not rows:
        return ""
    return "<h2>Timings</h2><table><tbody>%s</tbody></table>" % "".join(
        '<tr><th>%s</th><td>%s</td></tr>' % (_text(name), _text(value)) for name, value in rows)
