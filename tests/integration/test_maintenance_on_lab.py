"""Draining a lab hypervisor for maintenance: busy guests leave with bounded concurrency,
the mark holds (nothing lands on a host in maintenance), and the role and playbook do it
the way an operator would."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.kvmops.virt.plugins.module_utils.connection import LibvirtConnection
from ansible_collections.kvmops.virt.plugins.module_utils.maintenance import clear_mark, read_mark
from playbook_runner import PLAYBOOKS, run_playbook

GUESTS = 4


def fleet(lab):
    return [dict(name=host, uri=lab.host(host).spec.uri) for host in ("kvm1", "kvm2", "kvm3")]


def running_on(lab, host):
    with LibvirtConnection(lab.host(host).spec.uri) as conn:
        return sorted(domain.name() for domain in conn.handle.listAllDomains() if domain.isActive())


def mark_of(lab, host):
    with LibvirtConnection(lab.host(host).spec.uri) as conn:
        return read_mark(conn.handle)


@pytest.fixture
def busy_guests(lab, request):
    names = ["it-drain-%d" % index for index in range(1, GUESTS + 1)]
    for name in names:
        lab.remove_guest_if_defined(name)
    lab.create_guests(dict.fromkeys(names, "kvm1"), load=20)
    yield names
    for name in names:
        lab.remove_guest_if_defined(name)
    for host in ("kvm1", "kvm2", "kvm3"):
        with LibvirtConnection(lab.host(host).spec.uri) as conn:
            clear_mark(conn.handle)


def overlaps(moved):
    """Most migrations running at the same moment, from their start and end times."""
    events = sorted([(attempt["started"], 1) for item in moved for attempt in item["attempts"]]
                    + [(attempt["ended"], -1) for item in moved for attempt in item["attempts"]],
                    key=lambda event: (event[0], event[1]))
    running = peak = 0
    for _time, change in events:
        running += change
        peak = max(peak, running)
    return peak


def drain(run_module, lab, names, **options):
    return run_module("hypervisor_maintenance", dict(hypervisors=fleet(lab), names=names, **options))


@pytest.mark.parametrize("parallel", [1, 2])
def test_a_host_drains_with_bounded_concurrency(lab, run_module, busy_guests, parallel, figures):
    checked = run_module("hypervisor_maintenance", dict(hypervisors=fleet(lab), names=["kvm1"]), check=True)
    assert checked["changed"] and len(checked["plan"]) == GUESTS and mark_of(lab, "kvm1") is None
    assert {move["destination"] for move in checked["plan"]} == {"kvm2", "kvm3"}  # spread

    result = drain(run_module, lab, ["kvm1"], reason="firmware", max_parallel=parallel, max_per_source=parallel,
                   max_per_destination=parallel)
    assert result["changed"] and not result.get("failed"), result
    assert sorted(item["guest"] for item in result["moved"]) == busy_guests
    assert result["failures"] == [] and result["stayed"] == []
    assert overlaps(result["moved"]) <= parallel and result["peak_concurrency"]["overall"] <= parallel
    if parallel == 2:
        assert overlaps(result["moved"]) == 2  # it did use the room it had
    figures(f"drain kvm1 of {GUESTS} busy guests, {parallel} at a time", f"{result['seconds']:.1f} s")
    assert not set(busy_guests) & set(running_on(lab, "kvm1"))
    assert sorted(set(running_on(lab, "kvm2") + running_on(lab, "kvm3")) & set(busy_guests)) == busy_guests
    assert mark_of(lab, "kvm1")["reason"] == "firmware"

    again = drain(run_module, lab, ["kvm1"])
    assert not again["changed"] and again["moved"] == [], again  # marked and empty: nothing to do


def test_nothing_lands_on_a_host_in_maintenance(lab, run_module, busy_guests):
    first = drain(run_module, lab, ["kvm1"], max_parallel=2)
    assert not first.get("failed"), first
    # kvm2 goes too: its guests may only go to kvm3, never back to kvm1
    second = drain(run_module, lab, ["kvm2"], max_parallel=2)
    assert not second.get("failed"), second
    assert {item["destination"] for item in second["moved"]} <= {"kvm3"}
    assert not set(busy_guests) & set(running_on(lab, "kvm1") + running_on(lab, "kvm2"))
    out = drain(run_module, lab, ["kvm1", "kvm2"], state="exit")
    assert out["changed"] and mark_of(lab, "kvm1") is None and mark_of(lab, "kvm2") is None
    assert not drain(run_module, lab, ["kvm1"], state="exit")["changed"]


def test_a_pinned_guest_stays_and_fails_the_run_unless_partial(lab, run_module, busy_guests, pin_guest):
    pinned = busy_guests[0]
    pin_guest("kvm1", pinned)
    result = drain(run_module, lab, ["kvm1"])
    assert result.get("failed") and f"{pinned}: tagged migratable=false" in result["msg"], result
    assert mark_of(lab, "kvm1") is not None  # it stays in maintenance
    assert pinned in running_on(lab, "kvm1")
    partial = drain(run_module, lab, ["kvm1"], allow_partial=True)
    assert not partial.get("failed") and partial["stayed"][0]["guest"] == pinned


def test_the_maintenance_playbook(lab, ansible_env, busy_guests):
    recap, _elapsed = run_playbook(ansible_env, lab, "maintenance.yml",
                                   json.dumps(dict(maintenance_targets="kvm1", maintenance_reason="playbook test")))
    assert all(host["failed"] == 0 for host in recap.values()), recap
    assert not set(busy_guests) & set(running_on(lab, "kvm1"))
    assert mark_of(lab, "kvm1")["reason"] == "playbook test"
    recap, _elapsed = run_playbook(ansible_env, lab, "maintenance.yml",
                                   json.dumps(dict(maintenance_targets="kvm1", maintenance_state="exit")))
    assert all(host["failed"] == 0 for host in recap.values()), recap
    assert mark_of(lab, "kvm1") is None


def test_a_failed_move_is_retried_once_elsewhere_and_the_guest_stays_safe(lab, run_module, busy_guests):
    # at 1 MiB/s no guest's 256 MiB can be copied within 3 s: every move times out, twice
    result = drain(run_module, lab, ["kvm1"], max_parallel=2, migration=dict(bandwidth=1, timeout=3))
    assert result.get("failed") and "could not leave" in result["msg"], result
    failed = {item["guest"]: item for item in result["failures"]}
    assert set(failed) == set(busy_guests) and result["moved"] == [], result
    for item in failed.values():
        tried = [attempt["destination"] for attempt in item["attempts"]]
        assert len(tried) == 2 and len(set(tried)) == 2, item  # once more, on the other host
        assert "was aborted after 3 s (timeout)" in item["error"]
    running_here = running_on(lab, "kvm1")
    assert set(failed) <= set(running_here)  # still running where they were, once
    for name in failed:
        assert [host for host in ("kvm1", "kvm2", "kvm3") if name in running_on(lab, host)] == ["kvm1"]


def test_the_playbook_refuses_to_run_without_targets(lab, ansible_env):
    done = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(lab.layout.inventory_path),
                           str(PLAYBOOKS / "maintenance.yml")], env=ansible_env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode != 0 and "give -e maintenance_targets=<hypervisors>" in done.stdout, done.stdout
    assert all(mark_of(lab, host) is None for host in ("kvm1", "kvm2", "kvm3"))
