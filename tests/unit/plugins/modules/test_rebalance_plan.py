"""kvmops.virt.rebalance_plan: from a ready snapshot, and gathered from libvirt's test driver
(private node files, so every figure is ours). Planning itself: tests/unit/plugins/module_utils/placement."""

import pytest

from node_files import web_and_db


SNAPSHOT = dict(hosts=[dict(name="a", cpus=4, memory_mb=8192), dict(name="b", cpus=4, memory_mb=8192)],
                guests=[dict(name="g1", host="a", memory_mb=1024, cpu_cores=2.0),
                        dict(name="g2", host="a", memory_mb=512, cpu_cores=1.5)])


def test_a_snapshot_is_planned_and_nothing_changes(run_module):
    result = run_module("rebalance_plan", dict(snapshot=SNAPSHOT, now=0))
    assert result["changed"] is False and not result.get("failed")
    assert [(move["guest"], move["destination"], move["wave"]) for move in result["plan"]] == [("g2", "b", 1)]
    assert result["summary"]["message"] == "1 migration in 1 wave; hot hosts 1 -> 0"
    assert [host["status"] for host in result["hosts_before"]] == ["hot", "empty"]
    assert "snapshot" not in result
    checked = run_module("rebalance_plan", dict(snapshot=SNAPSHOT, now=0), check=True)
    assert checked["plan"] == result["plan"]


@pytest.mark.parametrize("args, message", [
    (dict(snapshot=dict(hosts=[dict(name="a", cpus="four", memory_mb=1)])), "cannot plan: hosts[0].cpus must be a number"),
    (dict(snapshot=SNAPSHOT, policy="evacuate"), "cannot plan: the evacuate policy needs the hosts to drain"),
    (dict(snapshot=SNAPSHOT, drain=["c"], policy="evacuate"), "drain names hosts the snapshot does not have: c"),
    (dict(snapshot=SNAPSHOT, max_migrations=-1), "max_migrations must be 0 (no limit) or more"),
    (dict(snapshot=SNAPSHOT, hypervisors=[]), "mutually exclusive"),
    (dict(), "one of the following is required: hypervisors, snapshot"),
    (dict(hypervisors=[dict(name="a")]), "hypervisors[0] needs a name and a uri"),
])
def test_bad_input_fails_with_a_clear_message(run_module, args, message):
    result = run_module("rebalance_plan", args)
    assert result["failed"] and message in result["msg"], result["msg"]


def test_the_fleet_is_gathered_from_the_hypervisors(run_module, tmp_path):
    hypervisors = web_and_db(tmp_path) + [dict(name="gone", uri="qemu+tcp://127.0.0.1:1/system")]
    result = run_module("rebalance_plan", dict(hypervisors=hypervisors, policy="evacuate", drain=["k1"],
                                               sample_seconds=0, connect_timeout=2))
    assert not result.get("failed"), result.get("msg")
    assert [(move["guest"], move["source"], move["destination"]) for move in result["plan"]] == [("web", "k1", "k2")]
    [problem] = result["unresolved"]
    assert problem["host"] == "k1" and problem["guests"] == [dict(guest="db", reason="tagged migratable=false")]
    assert [unreachable.split(" ")[0] for unreachable in result["summary"]["unreachable"]] == ["gone"]
    hosts = {host["name"]: host for host in result["snapshot"]["hosts"]}
    assert hosts["k1"] == dict(name="k1", cpus=4, memory_mb=16384.0, maintenance=False)
    assert hosts["gone"]["reachable"] is False
    assert sorted(guest["name"] for guest in result["snapshot"]["guests"]) == ["db", "web"]
