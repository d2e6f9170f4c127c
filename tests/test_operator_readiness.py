"""What the operator reads as ready replicas, for ``behavior.scaleDown.holdStarting: false``."""

from __future__ import annotations

from typing import Any

import pytest

from controller.operator.reconcile import _ready


def deployment(replicas: int, status: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"spec": {"replicas": replicas}}
    if status is not None:
        body["status"] = status
    return body


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(deployment(10, {"replicas": 10, "readyReplicas": 8}), 8, id="ready"),
        pytest.param(deployment(5, {"replicas": 5}), 0, id="the-api-omits-zero-ready"),
        pytest.param(
            deployment(0, {"observedGeneration": 3, "conditions": [{"type": "Available"}]}),
            0,
            id="the-api-omits-every-zero-count",
        ),
        pytest.param(deployment(4, {"observedGeneration": 2}), 0, id="observed-none-ready-yet"),
        pytest.param(None, 0, id="absent-deployment-runs-nothing"),
        pytest.param(deployment(5, None), None, id="status-not-written-yet-is-unknown"),
        pytest.param(deployment(5, {}), None, id="empty-status-is-unknown"),
    ],
)
def test_ready_replicas_from_deployment_status(
    body: dict[str, Any] | None, expected: int | None
) -> None:
    """Ready replicas come from status.readyReplicas; a status that says nothing yet makes
    readiness unknown, so that nothing is cancelled as starting."""
    assert _ready(body) == expected
