"""The inventory benchmark's own logic (tests/benchmarks/): scenarios, the static floor made
from the plugin's export, the comparison of outputs, the table's ratios. The timings
themselves come from `make bench-inventory`, never from a test."""

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import contenders  # pylint: disable=wrong-import-position
import report  # pylint: disable=wrong-import-position
from inventory_benchmark import Scenario  # pylint: disable=wrong-import-position


@pytest.mark.parametrize("text, name, real", [
    ("10x500", "10x500", 10), ("10x500+wan", "10x500+wan", 10), ("10x100+hung", "10x100+hung", 9),
])
def test_scenarios_parse(text, name, real):
    scenario = Scenario.parse(text)
    assert scenario.name == name and scenario.real_hypervisors == real and scenario.loopback_name == name.split("+")[0]


@pytest.mark.parametrize("text", ["10", "10x", "x5", "10x5+slow", "250x10", "1x0"])
def test_bad_scenarios_say_how_to_write_them(text):
    with pytest.raises(argparse.ArgumentTypeError, match="scenario"):
        Scenario.parse(text)


EXPORT = {
    "_meta": {"hostvars": {"kvm1": {"kvm_reachable": True}, "web-1": {"kvm_state": "running"}}},
    "all": {"children": ["ungrouped", "kvm_hypervisors", "kvm_maintenance", "kvm_guests"]},
    "kvm_hypervisors": {"hosts": ["kvm1"]},
    "kvm_guests": {"hosts": ["web-1"], "children": ["kvm_state_running"]},
    "kvm_state_running": {"hosts": ["web-1"], "vars": {"colour": "green"}},
}


def test_the_floor_keeps_every_host_variable_group_and_empty_group():
    floor = contenders.static_from_export(EXPORT)["all"]
    assert floor["hosts"] == {"kvm1": {"kvm_reachable": True}, "web-1": {"kvm_state": "running"}}
    assert floor["children"]["kvm_guests"] == {"hosts": {"web-1": None}, "children": {"kvm_state_running": None}}
    assert floor["children"]["kvm_state_running"]["vars"] == {"colour": "green"}
    assert floor["children"]["kvm_maintenance"] == {}  # no hosts, still a group
    assert "ungrouped" not in floor["children"]


def test_listings_compare_without_order():
    reordered = dict(EXPORT, all={"children": ["kvm_guests", "kvm_maintenance", "kvm_hypervisors", "ungrouped"]})
    assert contenders.listing_digest(reordered) == contenders.listing_digest(EXPORT)
    changed = dict(EXPORT, kvm_guests={"hosts": ["web-1", "web-2"]})
    assert contenders.listing_digest(changed) != contenders.listing_digest(EXPORT)
    assert contenders.listed_hosts(EXPORT) == {"kvm1", "web-1"}


def result(contender, seconds, mib, scenario="50x500", floor_key=None):
    runs = [SimpleNamespace(seconds=value, max_rss_mib=mib) for value in seconds]
    return report.Result(scenario, contender, contender, runs=runs, hosts=1, groups=1, floor_key=floor_key)


def test_the_table_gives_medians_and_ratios_to_floor_and_community():
    results = [result("kvmops", [10.0, 12.0, 30.0], 200), result("community", [40.0, 36.0, 50.0], 600),
               result("static", [20.0, 24.0, 22.0], 300),
               result("kvmops", [14.0], 210, scenario="50x500+wan", floor_key="50x500")]
    table = report.rows(results)
    assert table[0][2:5] == ["12.00", "10.00-30.00", "200"]
    assert table[0][6] == "0.55" and table[0][7] == "0.30 / 0.33"  # 12/22, 12/40, 200/600
    assert table[2][6] == "-"  # the floor against itself
    assert table[3][6] == "0.64" and table[3][7] == "-"  # the loopback floor; no community run there
    hung = report.Result("10x100+hung", "community", "community", status="hung")
    assert report.rows([hung])[0][2:5] == ["hung", "-", "-"]
    assert "| 50x500 | kvmops | 12.00 |" in report.markdown_table(results)
