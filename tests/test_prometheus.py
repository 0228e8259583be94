"""deploy/prometheus: the scrape configuration and the alerting rules, checked
against what the worker serves and where docker-compose.yml mounts them.

Every rule's expression is parsed as PromQL (`promql_parser`, the Rust parser of
GreptimeDB's, which knows Prometheus' functions), and every metric it names must be
one of the worker's families (`streams.worker_metrics`), a histogram's series, or
Prometheus' own ``up``: a renamed metric would otherwise leave a rule that never
fires.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from streams.gc_pauses import GcPauses
from streams.loop_delay import LoopDelay
from streams.metrics import HistogramFamily
from streams.sink import SinkStats
from streams.worker_metrics import worker_families
from tests.test_compose import _services

REPO_ROOT = Path(__file__).resolve().parent.parent
FOLDER = REPO_ROOT / "deploy" / "prometheus"
MOUNTED_AT = "/etc/prometheus"
SEVERITIES = {"critical", "warning"}


def load(name: str) -> Any:
    return yaml.safe_load((FOLDER / name).read_text(encoding="utf-8"))


def rules() -> list[dict[str, Any]]:
    return [rule for group in load("vigil-alerts.yml")["groups"] for rule in group["rules"]]


def served_metrics() -> set[str]:
    """Every series name the worker's /metrics can carry."""
    families = worker_families({}, {}, SinkStats(), {}, GcPauses(), LoopDelay().histogram, [], ready=True)
    names = set()
    for f in families:
        if isinstance(f, HistogramFamily):
            names |= {f"{f.name}_bucket", f"{f.name}_sum", f"{f.name}_count"}
        else:
            names.add(f.name)
    return names


def metrics_named(expr: str) -> set[str]:
    found: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def test_the_checks_catch_a_bad_expression_and_an_unknown_metric() -> None:
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(vigil_worker_messages_total[1m])")
    assert metrics_named("vigil_worker_no_such_metric > 0") - served_metrics() == {"vigil_worker_no_such_metric"}


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_each_rule_parses_and_names_only_what_the_worker_serves(rule: dict[str, Any]) -> None:
    named = metrics_named(rule["expr"])
    assert named, "a rule on no metric"
    assert named <= served_metrics() | {"up"}, named - served_metrics()
    assert rule["labels"]["severity"] in SEVERITIES
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_rules_cover_the_operating_questions() -> None:
    """Down or absent, not ready, behind, slow alarms, a blocked loop, the store
    unavailable or refusing, dead letters: one rule each, no name twice."""
    names = [r["alert"] for r in rules()]
    assert len(names) == len(set(names))
    covered = set().union(*(metrics_named(r["expr"]) for r in rules()))
    for metric in ("up", "vigil_worker_ready", "vigil_worker_input_lag_messages",
                   "vigil_worker_alarm_latency_seconds_bucket", "vigil_worker_event_loop_delay_seconds_bucket",
                   "vigil_worker_sink_retries_total", "vigil_worker_sink_rejected_total",
                   "vigil_worker_dead_letters_total"):
        assert metric in covered, metric


def test_promtools_unit_tests_make_every_rule_fire_on_the_workers_series() -> None:
    """vigil-alerts.test.yml (run by `make alerts-check`, which needs promtool, so
    not here): it loads these rules, feeds series the worker serves, and expects each
    alert to fire at least once."""
    tests = load("vigil-alerts.test.yml")
    assert tests["rule_files"] == ["vigil-alerts.yml"]
    fired = {case["alertname"] for test in tests["tests"] for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert fired == {r["alert"] for r in rules()}
    fed = {metrics_named(series["series"]).pop() for test in tests["tests"] for series in test["input_series"]}
    assert fed <= served_metrics() | {"up"}, fed - served_metrics()


def test_prometheus_scrapes_the_workers_and_loads_the_rules_compose_mounts() -> None:
    config = load("prometheus.yml")
    services = _services()
    mounts = {v["target"]: v for v in services["prometheus"]["volumes"] if v.get("type") == "bind"}
    assert Path(mounts[MOUNTED_AT]["source"]).resolve() == FOLDER and mounts[MOUNTED_AT].get("read_only")
    for path in config["rule_files"]:
        assert path.startswith(MOUNTED_AT + "/") and (FOLDER / path.removeprefix(MOUNTED_AT + "/")).is_file(), path
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "vigil-worker"]
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["worker"] and "worker" in services
    assert str(sd["port"]) == services["worker"]["environment"]["VIGIL_WORKER_METRICS_PORT"]
    # The rules' `up` selectors name this job.
    for rule in rules():
        if "up" in metrics_named(rule["expr"]):
            assert 'job="vigil-worker"' in rule["expr"], rule["alert"]
