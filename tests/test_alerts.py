"""Tidal's alerting rules (manifests/prometheus/tidal-rules.yaml) under the real promtool:
they load, each alert fires on the cases of tests/data/alert-cases.yaml and on no other, its
annotations render from its labels, and every metric the rules read is one the operator
exports."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from controller.operator.metrics import OperatorMetrics
from tests.support.prometheus_server import PROMTOOL, require_prometheus
from tests.support.repository import REPO, kustomize

RULES = REPO / "manifests" / "prometheus" / "tidal-rules.yaml"
PROMETHEUS_RULE = REPO / "manifests" / "overlays" / "alerts" / "prometheusrule.yaml"
CASES = REPO / "tests" / "data" / "alert-cases.yaml"
#: The only template the annotations use, so that the test can render them as Prometheus does.
LABEL = re.compile(r"\{\{\s*\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text("utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _render(text: str, labels: dict[str, str], alert: str) -> str:
    def label(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in labels, f"{alert}'s annotations name $labels.{name}, which it lacks"
        return labels[name]

    return LABEL.sub(label, text)


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, check=False, timeout=120, cwd=cwd
    )


def test_the_rules_load() -> None:
    require_prometheus()
    result = _promtool("check", "rules", str(RULES), cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_every_alert_fires_where_it_should_and_nowhere_else(tmp_path: Path) -> None:
    """``promtool test rules`` on the cases, each expected alert's annotations rendered."""
    require_prometheus()
    rules = {rule["alert"]: rule for rule in _rules()}
    cases = yaml.safe_load(CASES.read_text("utf-8"))
    fired: set[str] = set()
    for case in cases["tests"]:
        for check in case["alert_rule_test"]:
            rule = rules[check["alertname"]]
            for alert in check["exp_alerts"]:
                labels = {str(k): str(v) for k, v in alert["exp_labels"].items()}
                assert labels.items() >= {k: str(v) for k, v in rule["labels"].items()}.items()
                alert["exp_annotations"] = {
                    key: _render(text, labels, rule["alert"])
                    for key, text in rule["annotations"].items()
                }
                fired.add(rule["alert"])
    assert fired == set(rules), f"no case fires {sorted(set(rules) - fired)}"
    cases["rule_files"] = [str(RULES)]
    path = tmp_path / "alert-tests.yaml"
    path.write_text(yaml.safe_dump(cases, sort_keys=False), "utf-8")
    result = _promtool("test", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_annotations_use_no_other_template() -> None:
    """Only ``{{ $labels.NAME }}``: what the test above renders is what Prometheus renders."""
    for rule in _rules():
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        for text in rule["annotations"].values():
            assert "{{" not in LABEL.sub("", text), (rule["alert"], text)


def test_the_rules_read_only_what_the_operator_exports() -> None:
    used = {name for rule in _rules() for name in re.findall(r"\btidal_[a-z_]+", rule["expr"])}
    text = OperatorMetrics().exposition().decode()
    exported = set(re.findall(r"^# TYPE (\w+) ", text, flags=re.M))
    # A counter's samples end in _total, and its TYPE line names it without (prometheus_client).
    exported |= {f"{name}_total" for name in exported}
    assert used <= exported, sorted(used - exported)
    assert {"tidal_leader", "tidal_forecast_ready", "tidal_ready_replicas"} <= used


def test_the_prometheus_rule_holds_the_rule_file() -> None:
    """The Prometheus Operator's copy is the rule file's groups, and the overlay installs it
    beside the ServiceMonitor."""
    resource = yaml.safe_load(PROMETHEUS_RULE.read_text("utf-8"))
    assert resource["spec"] == yaml.safe_load(RULES.read_text("utf-8"))
    docs = kustomize("manifests/overlays/alerts")
    kinds = {doc["kind"] for doc in docs}
    assert {"PrometheusRule", "ServiceMonitor", "Deployment"} <= kinds
    [built] = [doc for doc in docs if doc["kind"] == "PrometheusRule"]
    assert built["spec"] == resource["spec"]
    assert built["metadata"]["namespace"] == "tidal-system"


def test_every_alert_is_documented() -> None:
    """README's "Alerts" says what each one means and what to look at."""
    readme = (REPO / "README.md").read_text("utf-8")
    section = readme[readme.index("### Alerts") :]
    missing = [rule["alert"] for rule in _rules() if f"`{rule['alert']}`" not in section]
    assert not missing, missing
