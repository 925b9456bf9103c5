"""kvmops.virt.hypervisor_maintenance on libvirt's test driver: its input checks, and the drain
it plans in check mode (the planner's evacuate policy). Real drains with live migrations:
tests/integration/test_maintenance_on_lab.py."""

import pytest

from node_files import web_and_db


def test_check_mode_plans_the_drain_with_the_planner_and_marks_nothing(run_module, tmp_path):
    result = run_module("hypervisor_maintenance", dict(hypervisors=web_and_db(tmp_path), names=["k1"], sample_seconds=0),
                        check=True)
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] and result["plan"] == [dict(guest="web", source="k1", destination="k2", reason="evacuate k1")]
    assert result["stayed"] == [dict(guest="db", source="k1", reason="tagged migratable=false")]
    assert result["marks"] == {"k1": None} and result["moved"] == []


@pytest.mark.parametrize("options, message", [
    (dict(cpu_target=0), "cpu_target must be positive, got 0.0"),
    (dict(sample_seconds=-1), "sample_seconds must be 0 or more, got -1.0"),
    (dict(max_per_destination=0), "max_per_destination must be at least 1, got 0"),
    (dict(names=["k9"]), "names k9 are not among the hypervisors (k1, k2)"),
    (dict(memory_reserve="lots"), "memory_reserve"),
])
def test_bad_input_fails_with_a_clear_message(run_module, tmp_path, options, message):
    args = dict(dict(hypervisors=web_and_db(tmp_path), names=["k1"]), **options)
    result = run_module("hypervisor_maintenance", args)
    assert result["failed"] and message in result["msg"], result["msg"]
