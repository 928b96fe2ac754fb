"""Writes deploy/grafana/dashboards/multiraft.json, the Grafana dashboard that docker-compose
provisions (deploy/grafana/provisioning/dashboards/multiraft.yml).

    python scripts/gen_dashboard.py          # regenerate the JSON
    python scripts/gen_dashboard.py --check  # exit 1 if the committed JSON is out of date

Panels are declared below as (title, unit, [(PromQL, legend), ...]); every PromQL expression
filters on the `$instance` variable (the stores' /metrics targets). tests/server/
test_metrics_endpoint.py checks that every metric the expressions query is exported.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "dashboards" / "multiraft.json"
# The uid of the provisioned Prometheus datasource (deploy/grafana/provisioning/datasources).
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
SEL = '{instance=~"$instance"}'
RI = "[$__rate_interval]"


def rate(metric: str, by: str = "instance", extra: str = "") -> str:
    sel = SEL if not extra else '{instance=~"$instance",' + extra + "}"
    return f"sum by ({by}) (rate({metric}{sel}{RI}))"


def p99(histogram: str) -> str:
    return f"histogram_quantile(0.99, sum by (instance, le) (rate({histogram}_bucket{SEL}{RI})))"


Target = tuple[str, str]
Panel = tuple[str, str, list[Target]]

ROWS: list[tuple[str, list[Panel]]] = [
    ("Stores", [
        ("Stores up (scrape succeeded)", "short", [(f"up{SEL}", "{{instance}}")]),
        ("Uptime", "s", [(f"time() - process_start_time_seconds{SEL}", "{{instance}}")]),
        ("Regions per store", "short", [(f"multiraft_regions{SEL}", "{{instance}}")]),
        ("Leaders per store", "short", [(f"multiraft_leaders{SEL}", "{{instance}}")]),
        ("Hibernated regions", "short", [(f"multiraft_hibernated_regions{SEL}", "{{instance}}")]),
        ("Leader elections won / s", "ops", [
            (rate("multiraft_leader_changes_total"), "{{instance}}"),
        ]),
        # 1 while every selected store hears from it; 0 once one does not (min), or none does
        # (max): a store down, or a network partition.
        ("Stores heard from (by the other stores)", "short", [
            (f"min by (store) (multiraft_store_up{SEL})", "store {{store}}: by all"),
            (f"max by (store) (multiraft_store_up{SEL})", "store {{store}}: by some"),
        ]),
    ]),
    ("Throughput", [
        ("Proposals / s", "ops", [(rate("multiraft_proposals_total"), "{{instance}}")]),
        ("Applied entries / s", "ops", [(rate("multiraft_applied_entries_total"), "{{instance}}")]),
        ("Reads / s", "ops", [(rate("multiraft_read_index_total"), "{{instance}}")]),
        ("Proposals refused / s, by reason", "ops", [
            (rate("multiraft_proposals_dropped_total", "instance, reason"),
             "{{instance}} {{reason}}"),
        ]),
    ]),
    ("Latency", [
        ("p99 propose to apply", "s", [(p99("multiraft_propose_to_apply_seconds"), "{{instance}}")]),
        ("p99 fsync (durable commit of a round)", "s", [
            (p99("multiraft_fsync_duration_seconds"), "{{instance}}"),
        ]),
        ("p99 apply of a round", "s", [(p99("multiraft_apply_duration_seconds"), "{{instance}}")]),
    ]),
    ("Batching", [
        ("Write rounds / s", "ops", [(rate("multiraft_batch_rounds_total"), "{{instance}}")]),
        ("Regions per round (mean)", "short", [(
            f"{rate('multiraft_batch_regions_per_round_sum')} / "
            f"{rate('multiraft_batch_regions_per_round_count')}",
            "{{instance}}",
        )]),
        ("Bytes written / s", "Bps", [(rate("multiraft_bytes_written_total"), "{{instance}}")]),
    ]),
    ("Network", [
        ("Raft messages / s", "ops", [
            (rate("multiraft_raft_messages_sent_total"), "{{instance}} sent"),
            (rate("multiraft_raft_messages_received_total"), "{{instance}} received"),
        ]),
        ("Frames / s", "ops", [
            (rate("multiraft_frames_sent_total"), "{{instance}} sent"),
            (rate("multiraft_transport_frames_received_total"), "{{instance}} received"),
        ]),
        ("Raft messages per frame (mean)", "short", [(
            f"{rate('multiraft_messages_per_frame_sum')} / "
            f"{rate('multiraft_messages_per_frame_count')}",
            "{{instance}}",
        )]),
        ("Transport bytes / s", "Bps", [
            (rate("multiraft_transport_bytes_total", "instance, direction"),
             "{{instance}} {{direction}}"),
        ]),
        ("Snapshots / s", "ops", [
            (rate("multiraft_snapshots_total", "instance, direction, outcome"),
             "{{instance}} {{direction}} {{outcome}}"),
        ]),
        ("Dropped and bad frames / s", "ops", [
            (rate("multiraft_transport_dropped_frames_total", "instance, reason"),
             "{{instance}} dropped: {{reason}}"),
            (rate("multiraft_router_lane_drops_total"), "{{instance}} lane full"),
            (rate("multiraft_bad_frames_total", "instance, reason"), "{{instance}} bad: {{reason}}"),
            (rate("multiraft_unreachable_reports_total"), "{{instance}} unreachable reports"),
        ]),
    ]),
    ("Region splits and merges", [
        ("Splits and merges (per 5 min)", "short", [
            (f"sum by (instance) (increase(multiraft_region_splits_total{SEL}[5m]))",
             "{{instance}} splits"),
            (f"sum by (instance) (increase(multiraft_region_merges_total{SEL}[5m]))",
             "{{instance}} merges"),
        ]),
    ]),
    ("Process", [
        ("CPU (cores)", "short", [(rate("process_cpu_seconds_total"), "{{instance}}")]),
        ("Resident memory", "bytes", [(f"process_resident_memory_bytes{SEL}", "{{instance}}")]),
        ("Open file descriptors", "short", [
            (f"process_open_fds{SEL}", "{{instance}} open"),
            (f"process_max_fds{SEL}", "{{instance}} max"),
        ]),
    ]),
]


def _panel(pid: int, title: str, unit: str, targets: list[Target], x: int, y: int) -> dict[str, Any]:
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 8, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr,
             "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    pid, y = 1, 0
    for row_title, row_panels in ROWS:
        panels.append({
            "id": pid, "type": "row", "title": row_title, "collapsed": False,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": [],
        })
        pid, y = pid + 1, y + 1
        for i, (title, unit, targets) in enumerate(row_panels):
            panels.append(_panel(pid, title, unit, targets, 8 * (i % 3), y + 8 * (i // 3)))
            pid += 1
        y += 8 * ((len(row_panels) + 2) // 3)
    return {
        "uid": "multiraft",
        "title": "multiraft",
        "tags": ["multiraft"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [{
            "name": "instance",
            "label": "store",
            "type": "query",
            "datasource": DATASOURCE,
            "query": {"query": "label_values(multiraft_regions, instance)", "refId": "instance"},
            "definition": "label_values(multiraft_regions, instance)",
            "refresh": 2,
            "multi": True,
            "includeAll": True,
            "current": {"text": "All", "value": "$__all"},
            "allValue": ".*",
        }]},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run python scripts/gen_dashboard.py", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
