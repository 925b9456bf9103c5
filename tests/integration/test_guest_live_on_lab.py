"""A running lab guest: disks attached and detached live, and guest_info's live usage."""

import time

import pytest

from ansible_collections.kvmops.virt.plugins.module_utils.connection import LibvirtConnection
from serial_log import SerialLog


def live_disks(uri, name):
    with LibvirtConnection(uri) as conn:
        xml = conn.handle.lookupByName(name).XMLDesc(0)
    return sorted(target for target in ("vda", "vdb", "vdc") if f"dev='{target}'" in xml)


@pytest.fixture
def data_volume(run_module, clone):
    """The name of a second disk for the clone: a detached disk is kept, so it is deleted here."""
    name = f"{clone['name']}-vdb.qcow2"
    args = dict(uri=clone["uri"], pool="default", name=name, state="absent")
    run_module("volume", args)
    yield name
    run_module("volume", args)


def test_a_disk_is_attached_and_detached_live(lab, run_module, clone, data_volume):
    started = run_module("guest", dict(clone, state="running"))
    log = SerialLog(lab.layout.serial_log(clone["name"]))
    log.wait_for_tick(lambda tick: True, timeout=120)
    template_disk = dict(pool="default", name=f"{clone['name']}-vda.qcow2")
    with_data = dict(uri=clone["uri"], name=clone["name"],
                     disks=[template_disk, dict(pool="default", size="32 MiB")])
    attached = run_module("guest", with_data)
    assert attached["actions"] == [f"created volume {data_volume} in pool default (32 MiB)",
                                   f"updated the definition of guest {clone['name']}",
                                   f"attached disk vdb to running guest {clone['name']}"], attached
    assert attached["restart_required"] is False
    assert live_disks(clone["uri"], clone["name"]) == ["vda", "vdb"]
    assert run_module("guest", with_data)["changed"] is False

    detached = run_module("guest", dict(uri=clone["uri"], name=clone["name"], disks=[template_disk]))
    assert detached["actions"][-1] == f"detached disk vdb from running guest {clone['name']}"
    deadline = time.monotonic() + 30  # the guest acknowledges the unplug (ACPI PCI hot-plug)
    while live_disks(clone["uri"], clone["name"]) != ["vda"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert live_disks(clone["uri"], clone["name"]) == ["vda"]
    assert started["guest"]["uuid"] == detached["guest"]["uuid"]


def test_guest_info_measures_what_the_guest_burns(lab, run_module, clone, figures):
    run_module("guest", dict(clone, state="running", tags={"role": "probe"}))
    SerialLog(lab.layout.serial_log(clone["name"])).wait_for_tick(lambda tick: True, timeout=120)
    args = dict(uri=clone["uri"], name=[clone["name"]], sample_seconds=2)
    idle = run_module("guest_info", args)["guests"][0]["usage"]
    lab.set_load(clone["name"], 60)
    busy = run_module("guest_info", args)["guests"][0]["usage"]
    figures("guest_info CPU of a lab guest, load 0% vs 60%", f"{idle['cpu_percent']}% vs {busy['cpu_percent']}%")
    assert idle["cpu_percent"] < 25
    assert 40 <= busy["cpu_percent"] <= 80
    assert busy["memory_actual"] == 256 * 1024 * 1024
    assert busy["memory_rss"] > 50 * 1024 * 1024
    # the balloon's statistics (every 10 s, set by the guest module) say what the guest uses
    deadline = time.monotonic() + 30
    while busy["memory_used"] is None and time.monotonic() < deadline:
        time.sleep(2)
        busy = run_module("guest_info", dict(args, sample_seconds=0))["guests"][0]["usage"]
    assert 8 * 1024 * 1024 < busy["memory_used"] < busy["memory_actual"], busy
    found = run_module("guest_info", dict(uri=clone["uri"], tags={"role": "probe"}, sample_seconds=0,
                                          query="[].name"))
    assert found["query_result"] == [clone["name"]]
