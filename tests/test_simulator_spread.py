"""The simulated cloud pool with each node's pods counted (``cloud_scoring`` ``LeastAllocated``
or ``MostAllocated``; the default, ``Packed``, is the idealisation the other tests cover).

Kubernetes' default scheduler scores nodes ``LeastAllocated``: a new pod goes to the emptiest
ready node; with ``MostAllocated``, to the fullest with room. A ReplicaSet scaling down
removes pods from the nodes that hold the most of its pods. Cluster Autoscaler takes back a
ready node only once its pods request under ``--scale-down-utilization-threshold`` of it (0.5
by default) and fit on the other nodes, for ``--scale-down-unneeded-time``, and evicts them to
do so. Counts in the comments are worked out by hand from those rules, at DESIGN's scenario: a
pod ready a minute after it is asked for, a node 5 minutes, 10 replicas a node, 10 unneeded
minutes.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from controller import simulator
from controller.backtest import backtest_spec
from controller.cli import main
from controller.simulator import ClusterModel, Scenario, Targets
from forecasts.series import LoadSeries

SPREAD = Scenario(cloud_scoring="LeastAllocated")


def _steady(cluster: ClusterModel, targets: Targets, minutes: range) -> list[int]:
    """Ask for the same ``targets`` at each of ``minutes``; the cloud nodes after each."""
    nodes = []
    for minute in minutes:
        cluster.apply(minute, targets)
        nodes.append(len(cluster.nodes))
    return nodes


def test_a_warm_start_spreads_pods_then_placeholders_over_the_nodes() -> None:
    """25 pods and 5 placeholders need 3 nodes. The pods go one at a time to the emptiest
    node, the first among equals: 9, 8, 8. The placeholders then fill the emptiest: the
    second node, the third, then each once more from the first: 1, 2, 2."""
    cluster = ClusterModel(SPREAD)
    cluster.warm_start(0, 25, 5)
    assert cluster.node_pods == [9, 8, 8]
    assert cluster.node_held == [1, 2, 2]


def test_a_replicaset_removes_pods_from_the_most_crowded_nodes() -> None:
    """From three full nodes down to 12 pods: the 18 pods go from whichever node holds the
    most, so 4 stay on each; 18 ready gateways disconnected."""
    cluster = ClusterModel(SPREAD)
    cluster.warm_start(0, 30, 0)
    cluster.apply(0, Targets(physical=0, cloud=12))
    assert cluster.node_pods == [4, 4, 4]
    assert cluster.removed == 18


def test_a_node_under_half_full_goes_after_ten_minutes_and_its_pods_start_again() -> None:
    """Three nodes of 4 pods are each under half full, and 12 pods fit on two: all three are
    unneeded from minute 0. At minute 10 (ten minutes on) one goes, the last among equals; its
    4 pods are evicted (4 more disconnected, 22 in all) and start on the two left, ready at
    minute 11. Those now hold 6 each, over half, and stay."""
    cluster = ClusterModel(SPREAD)
    cluster.warm_start(0, 30, 0)
    nodes = _steady(cluster, Targets(physical=0, cloud=12), range(11))
    assert nodes == [3] * 10 + [2]
    assert cluster.node_pods == [6, 6]
    assert cluster.removed == 22
    assert cluster.ready(10) == (0, 8)
    assert cluster.ready(11) == (0, 12)
    assert _steady(cluster, Targets(physical=0, cloud=12), range(11, 40)) == [2] * 29


def test_placeholders_keep_spread_nodes_that_packed_ones_give_back() -> None:
    """12 pods and 3 placeholders on three nodes: spread, each node holds 4 pods and 1
    placeholder, half of it, so none is ever unneeded. Packed, they fit on two nodes, and the
    third goes after ten minutes, at minute 10."""
    targets = Targets(physical=0, cloud=12, placeholders=3)
    spread = ClusterModel(SPREAD)
    spread.warm_start(0, 30, 0)
    assert _steady(spread, targets, range(40)) == [3] * 40
    assert (spread.node_pods, spread.node_held) == ([4, 4, 4], [1, 1, 1])
    packed = ClusterModel(Scenario())
    packed.warm_start(0, 30, 0)
    assert _steady(packed, targets, range(11)) == [3] * 10 + [2]


def test_the_threshold_is_cluster_autoscalers_flag() -> None:
    """At a threshold of 0.3, nodes 0.4 full are needed: the three stay."""
    cluster = ClusterModel(
        Scenario(cloud_scoring="LeastAllocated", scale_down_utilization_threshold=0.3)
    )
    cluster.warm_start(0, 30, 0)
    assert _steady(cluster, Targets(physical=0, cloud=12), range(30)) == [3] * 30


def test_a_new_node_takes_the_new_pods_and_stays_while_they_fit_nowhere_else() -> None:
    """One full node, 14 pods asked for: 4 pending, a node asked for at minute 0, ready at 5,
    where the 4 start. It holds 4 of its 10, under half, but the other node is full: its pods
    fit nowhere else, so it is needed, and stays."""
    cluster = ClusterModel(SPREAD)
    cluster.warm_start(0, 10, 0)
    nodes = _steady(cluster, Targets(physical=0, cloud=14), range(40))
    assert nodes == [2] * 40
    assert cluster.node_pods == [10, 4]
    assert cluster.ready(5) == (0, 10)
    assert cluster.ready(6) == (0, 14)
    assert cluster.removed == 0


def test_an_empty_node_goes_ten_minutes_after_it_is_ready() -> None:
    """10 more pods asked for at minute 0 and cancelled at 1, while their node boots: it is
    ready at 5 with nothing on it, unneeded from then, and goes at 15, not before."""
    cluster = ClusterModel(SPREAD)
    cluster.warm_start(0, 10, 0)
    cluster.apply(0, Targets(physical=0, cloud=20))
    nodes = _steady(cluster, Targets(physical=0, cloud=10), range(1, 16))
    assert nodes == [2] * 14 + [1]
    assert cluster.node_pods == [10]
    assert cluster.removed == 0


def test_a_pod_with_no_free_slot_preempts_a_placeholder_where_they_are_most() -> None:
    """Two nodes each with 5 pods and 5 placeholders; 3 more pods and no free slot: each takes
    a placeholder's slot where most placeholders are, the first among equals (5, 5, then 4
    against 5), and the placeholders they displace are pending."""
    cluster = ClusterModel(SPREAD)
    cluster.warm_start(0, 10, 10)
    assert (cluster.node_pods, cluster.node_held) == ([5, 5], [5, 5])
    cluster.apply(0, Targets(physical=0, cloud=13, placeholders=10))
    # The 3 displaced placeholders ask for a third node, which holds nothing while it boots.
    assert (cluster.node_pods, cluster.node_held) == ([7, 6, 0], [3, 4, 0])
    assert cluster.ready(1) == (0, 13)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_counts_stay_consistent_whatever_the_policy_asks(seed: int) -> None:
    """Random targets for 600 minutes: the pods counted on nodes are the pods scheduled, no
    node holds more than it can, a booting node holds nothing, and no count goes below 0."""
    rng = random.Random(seed)
    cluster = ClusterModel(SPREAD)
    cluster.warm_start(rng.randrange(0, 60), rng.randrange(0, 40), rng.randrange(0, 20))
    for minute in range(600):
        cluster.apply(
            minute,
            Targets(
                physical=rng.randrange(0, 70),
                cloud=rng.randrange(0, 80),
                placeholders=rng.randrange(0, 30),
            ),
        )
        ready = sum(1 for at in cluster.nodes if at <= minute)
        assert len(cluster.node_pods) == len(cluster.node_held) == len(cluster.nodes)
        assert sum(cluster.node_pods) == len(cluster.cloud)
        assert sum(cluster.node_held) <= cluster.placeholders
        assert min(cluster.node_pods + cluster.node_held, default=0) >= 0
        assert all(p + h <= 10 for p, h in zip(cluster.node_pods, cluster.node_held, strict=True))
        assert not any(cluster.node_pods[ready:]) and not any(cluster.node_held[ready:])


def test_backtest_flags_choose_the_scoring_and_the_report_says_which(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--cloud-scoring`` and ``--scale-down-utilization-threshold`` reach the scenario, and
    the report's scenario names both."""
    rows = [f"2020-01-01T{h:02d}:{m:02d}:00Z,{100 + 3 * m}" for h in range(4) for m in range(60)]
    trace = tmp_path / "t.csv"
    trace.write_text("timestamp,load\n" + "\n".join(rows) + "\n")
    argv = ["backtest", str(trace), "--json", "--policies", "oracle", "--jobs", "1"]
    assert (
        main(
            [
                *argv,
                "--cloud-scoring",
                "LeastAllocated",
                "--scale-down-utilization-threshold",
                "0.7",
            ]
        )
        == 0
    )
    scenario = json.loads(capsys.readouterr().out)["scenario"]
    assert (scenario["cloud_scoring"], scenario["scale_down_utilization_threshold"]) == (
        "LeastAllocated",
        0.7,
    )
    assert main(argv) == 0
    scenario = json.loads(capsys.readouterr().out)["scenario"]
    assert (scenario["cloud_scoring"], scenario["scale_down_utilization_threshold"]) == (
        "Packed",
        0.5,
    )


def test_removals_that_empty_nodes_give_one_back_without_evicting() -> None:
    """Three full nodes down to 20 pods. Marked as tidal marks them, the 10 removed all come
    off the first node, which is empty and goes at minute 10 with nobody evicted. In the
    ReplicaSet's own order they come off the fullest, leaving 7, 7 and 6: two-thirds full,
    so no node goes."""
    targets = Targets(physical=0, cloud=20)
    marked = ClusterModel(SPREAD, empties_nodes=True)
    marked.warm_start(0, 30, 0)
    assert _steady(marked, targets, range(11)) == [3] * 10 + [2]
    assert (marked.node_pods, marked.removed) == ([10, 10], 10)
    assert marked.ready(10) == (0, 20)
    unmarked = ClusterModel(SPREAD)
    unmarked.warm_start(0, 30, 0)
    assert _steady(unmarked, targets, range(40)) == [3] * 40
    assert sorted(unmarked.node_pods) == [6, 7, 7]


class _Fixed:
    """A policy that asks for the same each minute; ``empties_nodes`` as given."""

    def __init__(self, empties_nodes: bool) -> None:
        self.empties_nodes = empties_nodes

    def __call__(self, minute: int, view: Any) -> Targets:
        return Targets(physical=0, cloud=5)


def test_each_policy_gets_a_cluster_that_removes_as_it_marks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The simulator builds tidal's and the oracle's clusters to empty nodes, and the HPA's to
    follow the ReplicaSet's own order."""
    built: list[bool] = []

    class Recording(simulator.ClusterModel):
        def __init__(self, scenario: Scenario, *, empties_nodes: bool = False) -> None:
            built.append(empties_nodes)
            super().__init__(scenario, empties_nodes=empties_nodes)

    monkeypatch.setattr(simulator, "ClusterModel", Recording)
    load = LoadSeries(0.0, 60.0, np.full(30, 5_000.0))
    policies = {"marks": _Fixed(True), "does-not": _Fixed(False)}
    simulator.simulate(
        load,
        spec=backtest_spec("t", scenario=SPREAD),
        scenario=SPREAD,
        score_from=0.0,
        policies=policies,
        need=np.full(30, 1, dtype=np.int64),
    )
    assert built == [True, False]
    assert simulator.TidalPolicy.empties_nodes is simulator.OraclePolicy.empties_nodes is True
    assert not hasattr(simulator.HpaPolicy, "empties_nodes")


PACKING = Scenario(cloud_scoring="MostAllocated")


def test_most_allocated_fills_the_fullest_node_with_room_first() -> None:
    """25 pods and 5 placeholders on 3 nodes: the pods fill the first node, then the second,
    and 5 go on the third; the placeholders join them there."""
    cluster = ClusterModel(PACKING)
    cluster.warm_start(0, 25, 5)
    assert (cluster.node_pods, cluster.node_held) == ([10, 10, 5], [0, 0, 5])


@pytest.mark.parametrize(
    ("scenario", "placed"),
    [(PACKING, [7, 10]), (SPREAD, [9, 8])],
    ids=["most-allocated", "least-allocated"],
)
def test_new_pods_go_to_the_fullest_or_the_emptiest_node(
    scenario: Scenario, placed: list[int]
) -> None:
    """Two full nodes down to 15 pods: the ReplicaSet takes from the fuller each time, leaving
    7 and 8. Two more pods: MostAllocated puts both on the fuller (7, 10); LeastAllocated on
    the emptier, then the first of two equals (9, 8)."""
    cluster = ClusterModel(scenario)
    cluster.warm_start(0, 20, 0)
    cluster.apply(0, Targets(physical=0, cloud=15))
    assert cluster.node_pods == [7, 8]
    cluster.apply(1, Targets(physical=0, cloud=17))
    assert cluster.node_pods == placed


def test_a_packing_pool_still_thins_nodes_left_to_the_replicasets_order() -> None:
    """MostAllocated places pods tightly, but three full nodes down to 20 in the ReplicaSet's
    own order keep 7, 7 and 6: no node goes. Removals that empty nodes free one at minute 10."""
    targets = Targets(physical=0, cloud=20)
    unmarked = ClusterModel(PACKING)
    unmarked.warm_start(0, 30, 0)
    assert _steady(unmarked, targets, range(30)) == [3] * 30
    marked = ClusterModel(PACKING, empties_nodes=True)
    marked.warm_start(0, 30, 0)
    assert _steady(marked, targets, range(11)) == [3] * 10 + [2]
