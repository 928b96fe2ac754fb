"""`GET /metrics` of a running store: the process metrics are there, the `_created` series are
not; and the provisioned Grafana dashboard and the alerting rules query only metrics a store
exports (no dead panels, no alert that can never fire)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .nodes import Nodes, http, until

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "multiraft.json"

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
# Series Prometheus makes itself for every scrape target (not in any /metrics).
PROMETHEUS_SERIES = {"up"}
# The split and merge counters: the dashboard must query them (no longer allowed missing).
PENDING: set[str] = set()
SPLIT_MERGE = {"multiraft_region_splits_total", "multiraft_region_merges_total"}

_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan",
}


def queried_metrics(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, keywords, label matchers,
    grouping labels and ranges left out)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # ranges
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    e = re.sub(r"\boffset\s+\S+", "", e)  # offset durations
    e = re.sub(r"(?<![A-Za-z_:])[0-9][0-9A-Za-z_.]*", "", e)  # numbers (0.99, 1e3, 5m)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        rest = e[m.end():].lstrip()
        if rest.startswith("("):  # a function or an aggregation
            continue
        if m.group().lower() in _KEYWORDS:
            continue
        names.add(m.group())
    return names


def test_queried_metrics_parser() -> None:
    assert queried_metrics(
        'histogram_quantile(0.99, sum by (instance, le) '
        '(rate(a_seconds_bucket{instance=~"$instance"}[$__rate_interval])))'
    ) == {"a_seconds_bucket"}
    assert queried_metrics('time() - b{x="y"} / on (instance) c offset 5m') == {"b", "c"}


def exported_names(text: str) -> set[str]:
    """Every series name a scrape can contain: the samples, plus what the TYPE lines promise
    (a labelled family with no child yet has no sample)."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            if kind in ("histogram", "summary"):
                names |= {name + "_sum", name + "_count"}
                if kind == "histogram":
                    names.add(name + "_bucket")
            else:
                names.add(name)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


@pytest.fixture(scope="module")
def scrape(tmp_path_factory: pytest.TempPathFactory) -> str:
    """/metrics of a store that served a few writes."""
    from multiraft.client import AsyncClient

    async def main() -> str:
        nodes = Nodes(tmp_path_factory.mktemp("metrics"), 1, initial_regions=2)
        node = await nodes.start(1)
        try:
            await until(lambda: node.store.leaders() == 2)
            async with AsyncClient([node.client_addr], timeout=20) as c:
                for i in range(5):
                    await c.put(b"k%d" % i, b"v")
                    assert await c.get(b"k%d" % i) == b"v"
            status, text = await http("GET", nodes.url(1, "/metrics"))
            assert status == 200
            assert isinstance(text, str)
            return text
        finally:
            await nodes.close()

    return asyncio.run(main())


def test_process_metrics_and_no_created_series(scrape: str) -> None:
    names = exported_names(scrape)
    assert {
        "process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds",
        "process_start_time_seconds",
    } <= names
    assert "multiraft_proposals_total" in names
    assert [line for line in scrape.splitlines() if "_created" in line] == []


def _dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def test_dashboard_queries_only_exported_metrics(scrape: str) -> None:
    queried: set[str] = set()
    for expr in _dashboard_exprs():
        queried |= queried_metrics(expr)
    # The panels the dashboard must have.
    assert {
        "up", "multiraft_regions", "multiraft_leaders", "multiraft_hibernated_regions",
        "multiraft_proposals_total", "multiraft_applied_entries_total",
        "multiraft_read_index_total", "multiraft_propose_to_apply_seconds_bucket",
        "multiraft_fsync_duration_seconds_bucket", "multiraft_batch_rounds_total",
        "multiraft_batch_regions_per_round_sum", "multiraft_raft_messages_sent_total",
        "multiraft_frames_sent_total", "multiraft_snapshots_total",
        "multiraft_transport_dropped_frames_total", "process_resident_memory_bytes",
        "multiraft_store_up", *SPLIT_MERGE,
    } <= queried
    missing = queried - exported_names(scrape) - PROMETHEUS_SERIES
    assert missing <= PENDING, f"dead panels: {sorted(missing - PENDING)}"


def test_dashboard_is_provisioned() -> None:
    doc = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uids = {d["uid"] for d in ds["datasources"]}
    for p in doc["panels"]:
        if p["type"] != "row":
            assert p["datasource"]["uid"] in uids, p["title"]
            assert p["targets"], p["title"]
    # The provider loads the directory docker-compose mounts the dashboards at.
    prov = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "multiraft.yml").read_text())
    path = prov["providers"][0]["options"]["path"]
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{path}:ro" in mounts
    home = compose["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{path}/{DASHBOARD.name}"
    # The committed JSON is what the generator writes.
    p = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_dashboard.py"), "--check"],
        capture_output=True, text=True, timeout=60,
    )
    assert p.returncode == 0, p.stderr


def test_alert_rules_query_only_exported_metrics(scrape: str) -> None:
    doc = yaml.safe_load(ALERTS.read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert len(rules) >= 10
    queried: set[str] = set()
    for r in rules:
        assert r["alert"].startswith("Multiraft") and r["labels"]["severity"] in (
            "critical", "warning"
        )
        assert r["annotations"]["summary"]
        queried |= queried_metrics(r["expr"])
    assert {
        "up", "multiraft_leaders", "multiraft_fsync_duration_seconds_bucket", "multiraft_store_up"
    } <= queried
    missing = queried - exported_names(scrape) - PROMETHEUS_SERIES
    assert not missing, f"alerts on metrics no store exports: {sorted(missing)}"
    # Prometheus loads them (docker-compose mounts the file where prometheus.yml says).
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    mounts = compose["services"]["prometheus"]["volumes"]
    for path in prom["rule_files"]:
        assert f"./prometheus/{Path(path).name}:{path}:ro" in mounts


@pytest.mark.parametrize("doc", ["operations.md", "architecture.md"])
def test_metrics_named_in_the_docs_are_exported(scrape: str, doc: str) -> None:
    text = (ROOT / "docs" / doc).read_text()
    named = set(re.findall(r"\b(?:multiraft|process)_[a-z_]+[a-z]\b", text))
    exported = exported_names(scrape)
    # A histogram is named by its family name in prose.
    families = exported | {n.rsplit("_", 1)[0] for n in exported if n.endswith("_bucket")}
    assert not named - families - PENDING, sorted(named - families - PENDING)
