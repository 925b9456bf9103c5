"""End to end on the lab: a busy guest live-migrates between two real hypervisors."""

import re
import time

import libvirt
import pytest

from ansible_collections.kvmops.virt.plugins.module_utils.connection import LibvirtConnection, LibvirtOperationError
from guest_stats import cpu_percent

TICK = re.compile(r"kvmops-lab: tick=(\d+) up=([\d.]+) load=(\d+)")
LIVE_P2P = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
            | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)


def ticks(lab, name):
    """(tick, uptime, load) the guest printed on its serial port, from both hosts' QEMU."""
    text = lab.layout.serial_log(name).read_text(errors="replace")
    return [(int(n), float(up), int(load)) for n, up, load in TICK.findall(text)]


def wait_for_ticks_after(lab, name, count, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ticks(lab, name) and ticks(lab, name)[-1][0] >= count:
            return ticks(lab, name)
        time.sleep(0.5)
    raise AssertionError(f"{name} printed no tick {count} within {timeout} s")


def where_is(lab, name):
    """host name -> (running?, persistent?) for every lab host that knows the guest."""
    found = {}
    for host in lab.running_hosts():
        with LibvirtConnection(host.spec.uri, connect_timeout=5) as conn:
            try:
                dom = conn.handle.lookupByName(name)
            except libvirt.libvirtError as error:
                assert error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN
                continue
            found[host.spec.name] = (bool(dom.isActive()), bool(dom.isPersistent()))
    return found


def test_busy_guest_live_migrates_and_keeps_its_load(lab, guest_name, figures):
    source, destination = lab.host("kvm1").spec, lab.host("kvm2").spec
    started = time.monotonic()
    lab.create_guest(guest_name, "kvm1", load=50)
    figures("create + boot a lab guest (TCG, load confirmed)", f"{time.monotonic() - started:.1f} s")

    with LibvirtConnection(source.uri) as conn:
        before = cpu_percent(conn.handle, guest_name)
    figures("guest CPU use at load 50% on kvm1", f"{before:.0f}% of its vCPU")
    assert 35 <= before <= 70

    last_tick_before = wait_for_ticks_after(lab, guest_name, 3)[-1][0]
    with LibvirtConnection(source.uri) as conn:
        with conn.operation(f"live-migrate {guest_name} to {destination.uri}"):
            dom = conn.handle.lookupByName(guest_name)
            started = time.monotonic()
            dom.migrateToURI3(destination.uri, {}, LIVE_P2P)
            migration_seconds = time.monotonic() - started
    figures("live migration kvm1 -> kvm2 (p2p, guest at 50%)", f"{migration_seconds:.2f} s")

    assert where_is(lab, guest_name) == {"kvm2": (True, True)}

    with LibvirtConnection(destination.uri) as conn:
        after = cpu_percent(conn.handle, guest_name)
    figures("guest CPU use on kvm2 after migration", f"{after:.0f}% of its vCPU")
    assert 35 <= after <= 70

    seen = wait_for_ticks_after(lab, guest_name, last_tick_before + 3)
    numbers = [n for n, _up, _load in seen]
    assert numbers == list(range(1, numbers[-1] + 1)), "the guest's tick counter skipped or restarted"
    uptimes = [up for _n, up, _load in seen]
    longest_gap = max(b - a for a, b in zip(uptimes, uptimes[1:]))
    figures("longest gap between guest ticks across the move", f"{longest_gap:.2f} s (ticks every 1 s)")
    assert longest_gap < 2.5
    assert all(load == 50 for n, _up, load in seen if n > last_tick_before)

    host, (load, _dirty) = lab.set_load(guest_name, 10)
    assert (host, load) == ("kvm2", 10)
    with LibvirtConnection(destination.uri) as conn:
        assert cpu_percent(conn.handle, guest_name) < 25


def test_migration_to_a_host_that_is_down_leaves_the_guest_where_it_was(lab, guest_name):
    lab.create_guest(guest_name, "kvm1", load=0)
    with LibvirtConnection(lab.host("kvm1").spec.uri) as conn:
        with pytest.raises(LibvirtOperationError) as caught:
            with conn.operation(f"live-migrate {guest_name} to qemu+tcp://127.0.0.250/system"):
                conn.handle.lookupByName(guest_name).migrateToURI3("qemu+tcp://127.0.0.250/system", {}, LIVE_P2P)
    assert "127.0.0.250" in str(caught.value)
    assert where_is(lab, guest_name) == {"kvm1": (True, True)}


def test_status_shows_each_guest_with_its_cpu_use(lab, guest_name):
    lab.create_guest(guest_name, "kvm3", load=30)
    statuses = {status.name: status for status in lab.status(seconds=3)}
    (guest,) = [g for g in statuses["kvm3"].guests if g.name == guest_name]
    assert (guest.state, guest.load_set) == ("running", 30)
    assert 15 <= guest.cpu_percent <= 50
    assert guest_name in lab.render_status(seconds=0.5)
