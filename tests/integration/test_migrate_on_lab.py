"""kvmops.virt.migrate on the real lab: busy guests moved live and back with their own
counter showing no gap, and faults injected while they move. After each: the guest runs
exactly once and is defined exactly once, on the expected host, and the module said so."""

import subprocess
import sys
import threading
import time

import pytest

from ansible_collections.kvmops.virt.plugins.module_utils.connection import LibvirtConnection
from ansible_collections.kvmops.virt.plugins.module_utils.metadata import GuestMetadata
from ansible_collections.kvmops.virt.plugins.module_utils.safe_xml import parse_xml
from guest_placement import where
from serial_log import SerialLog

SOURCE, DESTINATION = "kvm1", "kvm2"


def assert_exactly_once(lab, name, host):
    assert where(lab, name) == {host: (True, True)}, f"{name}: {where(lab, name)}, expected only on {host}"


def migrate_args(lab, name, source=SOURCE, destination=DESTINATION, **options):
    return dict(uri=lab.host(source).spec.uri, name=name, destination=lab.host(destination).spec.uri, **options)


def assert_no_gap(log, since, seconds_between=2.5):
    """The guest's loadd counted on without a jump (its tick number is its own clock)."""
    ticks = log.ticks(since)
    assert len(ticks) >= 2, f"too few ticks to judge: {ticks}"
    numbers = [tick.number for tick in ticks]
    # what the guest printed, so a failure shows a reboot or a kernel message, not only numbers
    printed = log.text(since)[-3000:]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), f"tick numbers jump: {numbers}\n{printed}"
    gaps = [later.uptime - earlier.uptime for earlier, later in zip(ticks, ticks[1:])]
    assert max(gaps) < seconds_between, f"the guest's ticks paused: {gaps}\n{printed}"


@pytest.fixture
def busy_guest(lab, guest_name):
    lab.create_guest(guest_name, SOURCE, load=50)
    lab.set_load(guest_name, dirty=16)
    return guest_name


def test_a_busy_guest_moves_live_and_back_without_a_gap(lab, run_module, busy_guest, figures):
    log = SerialLog(lab.layout.serial_log(busy_guest))
    log.wait_for_tick(lambda tick: True, what="a first tick")
    since = log.size()
    checked = run_module("migrate", migrate_args(lab, busy_guest), check=True)
    assert checked["changed"] and not checked["moved"], checked
    assert checked["diff"]["after"]["hypervisor"] == lab.host(DESTINATION).spec.uri
    assert_exactly_once(lab, busy_guest, SOURCE)  # check mode moved nothing

    there = run_module("migrate", migrate_args(lab, busy_guest, max_downtime=300))
    assert there["changed"] and there["moved"], there
    assert_exactly_once(lab, busy_guest, DESTINATION)
    figures("migrate a busy guest (load 50 %, dirtying 16 MiB/s) kvm1 -> kvm2",
            f"{there['elapsed_ms']} ms, downtime {there['figures'].get('downtime_ms')} ms, "
            f"{there['figures'].get('memory_iterations')} iterations")
    assert there["figures"]["downtime_ms"] < 1000 and there["figures"]["data_processed_bytes"] > 0
    with LibvirtConnection(lab.host(DESTINATION).spec.uri) as conn:
        recorded = GuestMetadata.from_domain(parse_xml(conn.handle.lookupByName(busy_guest).XMLDesc(0)))
    assert recorded.last_migration["at"] == there["migrated_at"]
    assert abs(there["migrated_at"] - time.time()) < 60

    again = run_module("migrate", migrate_args(lab, busy_guest))
    assert not again["changed"] and not again["moved"], again  # already there

    back = run_module("migrate", migrate_args(lab, busy_guest, source=DESTINATION, destination=SOURCE,
                                              transport="direct"))
    assert back["changed"] and back["moved"], back
    assert_exactly_once(lab, busy_guest, SOURCE)
    figures("migrate it back kvm2 -> kvm1 (transport direct)",
            f"{back['elapsed_ms']} ms, downtime {back['figures'].get('downtime_ms')} ms")
    time.sleep(2)
    assert_no_gap(log, since)


def test_a_migration_that_outlives_its_timeout_is_aborted_and_the_guest_stays(lab, run_module, busy_guest, figures):
    lab.set_load(busy_guest, dirty=64)
    log = SerialLog(lab.layout.serial_log(busy_guest))
    since = log.size()
    for _attempt in range(2):
        started = time.monotonic()
        result = run_module("migrate", migrate_args(lab, busy_guest, bandwidth=1, timeout=3))
        assert result.get("failed") and "was aborted after 3 s (timeout)" in result["msg"], result
        assert "runs on source, defined on source" in result["msg"]
        assert time.monotonic() - started < 30
        assert_exactly_once(lab, busy_guest, SOURCE)
    assert_no_gap(log, since)
    figures("fault: timeout (1 MiB/s, dirtying 64 MiB/s, timeout 3 s)", "2 runs, guests lost 0, duplicates 0")


def test_an_unreachable_destination_changes_nothing(lab, run_module, busy_guest, closed_port, silent_listener,
                                                    figures):
    for port in (closed_port, silent_listener):  # refused, and accepted but never answered
        result = run_module("migrate", dict(uri=lab.host(SOURCE).spec.uri, name=busy_guest,
                                            destination=f"qemu+tcp://127.0.0.1:{port}/system", connect_timeout=3))
        assert result.get("failed") and "Could not open a connection" in result["msg"], result
        assert_exactly_once(lab, busy_guest, SOURCE)
    figures("fault: destination unreachable (refused; silent)", "2 runs, guests lost 0, duplicates 0")


def test_refusals_before_anything_moves(lab, run_module, busy_guest, pin_guest):
    pin_guest(SOURCE, busy_guest)
    pinned = run_module("migrate", migrate_args(lab, busy_guest))
    assert pinned.get("failed") and "tagged migratable=false; give force=true" in pinned["msg"], pinned
    offline = run_module("migrate", migrate_args(lab, busy_guest, live=False, force=True))
    assert offline.get("failed") and "is running: an offline migration" in offline["msg"], offline
    bad = run_module("migrate", migrate_args(lab, busy_guest, bandwidth=0, p2p_uri="x", transport="direct"))
    assert bad.get("failed") and "bandwidth must be a positive number" in bad["msg"] and "p2p_uri is for" in bad["msg"]
    missing = run_module("migrate", migrate_args(lab, "no-such-guest"))
    assert missing.get("failed") and "guest no-such-guest is not on the source" in missing["msg"], missing
    assert_exactly_once(lab, busy_guest, SOURCE)


def _available_mib(lab, host):
    with LibvirtConnection(lab.host(host).spec.uri) as conn:
        stats = conn.handle.getMemoryStats(-1)
    return (stats["free"] + stats.get("buffers", 0) + stats.get("cached", 0)) // 1024, stats["total"] // 1024


@pytest.fixture
def memory_hog():
    """hog(mib): a process holding that much memory (touched, so it is really taken) until the test ends."""
    processes = []

    def hog(mib):
        process = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, "-c", HOG_PROGRAM, str(mib)], stdout=subprocess.PIPE, text=True)
        processes.append(process)
        assert process.stdout.readline().strip() == "ready"

    yield hog
    for process in processes:
        process.kill()
        process.wait()


HOG_PROGRAM = """
import mmap, sys, time
size = int(sys.argv[1]) * 1024 * 1024
memory = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # shared would count as page cache
for offset in range(0, size, 4096):
    memory[offset] = 1
print("ready", flush=True)
time.sleep(900)
"""


def test_a_destination_without_the_memory_is_refused(lab, run_module, guest_name, memory_hog, figures):
    # The lab's hosts share this machine's memory: a guest that may grow to most of it
    # (QEMU only takes what the guest touches), and a process that takes enough of the rest
    # that the destination cannot promise the guest its memory.
    available, total = _available_mib(lab, DESTINATION)
    guest_mib = total - 4096
    hog_mib = max(0, available - guest_mib + 1024)
    if hog_mib > total // 2:
        pytest.skip(f"this machine has too little memory free for the test ({available} of {total} MiB)")
    memory_hog(hog_mib)
    lab.create_guest(guest_name, SOURCE, memory_mib=guest_mib)
    result = run_module("migrate", migrate_args(lab, guest_name))
    assert result.get("failed") and "of memory free (with page cache), guest" in result["msg"], result
    assert_exactly_once(lab, guest_name, SOURCE)
    figures("fault: destination without enough memory", "1 run, guests lost 0, duplicates 0")


def test_the_destination_daemon_killed_mid_migration(lab, run_module, busy_guest, figures):
    lab.set_load(busy_guest, dirty=64)
    for _attempt in range(2):
        results = []
        worker = threading.Thread(target=lambda results=results: results.append(
            run_module("migrate", migrate_args(lab, busy_guest, bandwidth=2, timeout=60))))
        worker.start()
        time.sleep(2)  # the migration is under way, copying at 2 MiB/s
        lab.host(DESTINATION).kill()
        lab.host(DESTINATION).start()  # as systemd would; the module waits for it to look again
        worker.join(120)
        (result,) = results
        assert result.get("failed") and not result.get("moved"), result
        assert "runs on source, defined on source" in result["msg"], result
        assert_exactly_once(lab, busy_guest, SOURCE)
    figures("fault: destination libvirtd killed mid-migration", "2 runs, guests lost 0, duplicates 0")


def test_the_source_daemon_restarted_after_the_move(lab, run_module, busy_guest, figures):
    moved = run_module("migrate", migrate_args(lab, busy_guest))
    assert moved["moved"], moved
    lab.host(SOURCE).kill()
    lab.host(SOURCE).start()
    assert_exactly_once(lab, busy_guest, DESTINATION)
    back = run_module("migrate", migrate_args(lab, busy_guest, source=DESTINATION, destination=SOURCE))
    assert back["moved"], back
    lab.host(DESTINATION).kill()
    lab.host(DESTINATION).start()
    assert_exactly_once(lab, busy_guest, SOURCE)
    figures("fault: source libvirtd killed and restarted after the move", "2 runs, guests lost 0, duplicates 0")


def test_a_guest_that_does_not_converge_finishes_in_post_copy(lab, run_module, busy_guest, figures):
    lab.set_load(busy_guest, dirty=64)
    log = SerialLog(lab.layout.serial_log(busy_guest))
    since = log.size()
    result = run_module("migrate", migrate_args(lab, busy_guest, bandwidth=8, postcopy=2, timeout=5))
    assert result["moved"] and result["postcopy"], result  # the timeout no longer applies once in post-copy
    assert_exactly_once(lab, busy_guest, DESTINATION)
    figures("post-copy after 2 s (8 MiB/s, dirtying 64 MiB/s)",
            f"{result['elapsed_ms']} ms, downtime {result['figures'].get('downtime_ms')} ms, "
            f"{result['figures'].get('postcopy_requests', 0)} post-copy page requests")
    time.sleep(2)
    assert_no_gap(log, since, seconds_between=5)


def test_auto_converge_and_parallel_connections(lab, run_module, busy_guest):
    lab.set_load(busy_guest, dirty=64)
    result = run_module("migrate", migrate_args(lab, busy_guest, bandwidth=32, auto_converge=True,
                                                parallel_connections=2, timeout=120))
    assert result["moved"], result
    assert_exactly_once(lab, busy_guest, DESTINATION)


def test_a_stopped_guest_moves_offline(lab, run_module, busy_guest):
    with LibvirtConnection(lab.host(SOURCE).spec.uri) as conn:
        conn.handle.lookupByName(busy_guest).destroy()
    live = run_module("migrate", migrate_args(lab, busy_guest))
    assert live.get("failed") and "is not running: a live migration needs a running guest" in live["msg"]
    result = run_module("migrate", migrate_args(lab, busy_guest, live=False))
    assert result["moved"], result
    assert where(lab, busy_guest) == {DESTINATION: (False, True)}
    assert not run_module("migrate", migrate_args(lab, busy_guest, live=False))["changed"]
