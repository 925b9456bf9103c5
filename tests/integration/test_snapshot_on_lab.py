"""kvmops.virt.snapshot on the real lab (kvm1): what the test driver cannot show.

A live snapshot really holds the guest's memory: the load a running guest was set to
(in its RAM only, over the serial console) comes back on a revert, its tick counter jumps
back instead of restarting, and it keeps running. A disk-only snapshot of a stopped guest
really holds the disk: bytes written after it are gone after a revert, and a running guest
reverted to it boots again from the reverted disk.

Lab guests have no disk, so each test builds its own: a qcow2 volume in a dir pool of its
own on kvm1 and a guest like the lab's (same kernel, initramfs and serial log) with that
volume attached. The daemon sees /var/lib/libvirt as the host's .lab/hosts/kvm1/lib, which
is where qemu-io reads and writes the image from this side.
"""

import contextlib
import re
import subprocess
import time
import uuid

import libvirt
import pytest

from ansible_collections.kvmops.virt.plugins.module_utils.safe_xml import parse_xml, sub_element, to_xml
from lab.guests import guest_xml, set_load

MIB = 1024 ** 2
TICK = re.compile(r"kvmops-lab: tick=(\d+) up=([\d.]+) load=(\d+)")
POOL_ROOT = "/var/lib/libvirt/"


@pytest.fixture(scope="module", name="kvm1")
def kvm1_fixture(lab):
    return lab.host("kvm1")


def host_path(kvm1, path):
    """Where a file under the daemon's /var/lib/libvirt is on this machine."""
    assert path.startswith(POOL_ROOT)
    return kvm1.dir / "lib" / path[len(POOL_ROOT):]


def qemu_io(path, command, shared=False):
    """Run one qemu-io command on a qcow2 image; ``shared`` reads an image a running QEMU holds."""
    options = ["-U", "-r"] if shared else []
    done = subprocess.run(["qemu-io", "-f", "qcow2", *options, "-c", command, str(path)],
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout + done.stderr


def holds_pattern(path, byte, shared=False):
    out = qemu_io(path, "read -P 0x%02x 0 64k" % byte, shared)
    assert "read 65536/65536 bytes" in out, out
    return "Pattern verification failed" not in out


def pool_xml(name):
    root = parse_xml("<pool type='dir'/>")
    sub_element(root, "name", name)
    sub_element(sub_element(root, "target"), "path", POOL_ROOT + name)
    return to_xml(root)


def volume_xml(name):
    root = parse_xml("<volume/>")
    sub_element(root, "name", name)
    sub_element(root, "capacity", 64 * MIB, unit="bytes")
    sub_element(sub_element(root, "target"), "format", type="qcow2")
    return to_xml(root)


def disk_guest_xml(lab, name, disk_path, load):
    """A lab guest (kernel, initramfs, loadd, serial log) with a qcow2 disk as vda."""
    image = lab.layout.image_dir
    root = parse_xml(guest_xml(name, lab.layout, image / "vmlinuz", image / "initrd.gz", load=load))
    disk = sub_element(root.find("devices"), "disk", type="file", device="disk")
    sub_element(disk, "driver", name="qemu", type="qcow2")
    sub_element(disk, "source", file=disk_path)
    sub_element(disk, "target", dev="vda", bus="virtio")
    return to_xml(root)


@pytest.fixture(name="disk_guest")
def disk_guest_fixture(lab, kvm1):
    """disk_guest(boot_load, running) -> (domain, volume); everything goes afterwards, also on failure."""
    with contextlib.ExitStack() as cleanup:
        conn = libvirt.open(kvm1.spec.uri)
        cleanup.callback(conn.close)
        tag = uuid.uuid4().hex[:8]
        pool = conn.storagePoolDefineXML(pool_xml(f"it-snapshot-{tag}"))
        cleanup.callback(_remove_pool, pool)
        pool.build(0)
        pool.create(0)

        def make(boot_load=0, running=True):
            name = f"it-snap-{uuid.uuid4().hex[:8]}"
            volume = pool.createXML(volume_xml(f"{name}.qcow2"), 0)
            cleanup.callback(volume.delete, 0)
            serial_log = lab.layout.serial_log(name)
            cleanup.callback(serial_log.unlink, missing_ok=True)
            domain = conn.defineXML(disk_guest_xml(lab, name, volume.path(), boot_load))
            cleanup.callback(_remove_guest, domain)
            if running:
                domain.create()
                assert set_load(domain, load=boot_load, timeout=120) == (boot_load, 0)
            return domain, volume

        yield make


def _remove_guest(domain):
    if domain.isActive():
        domain.destroy()
    # internal snapshots live in the volume, deleted next; only their metadata is here
    domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)


def _remove_pool(pool):
    if pool.isActive():
        pool.destroy()
    pool.delete(0)
    pool.undefine()


@pytest.fixture(name="snap")
def snap_fixture(run_module, kvm1):
    """snap(domain, check=False, **options) -> the module's result on kvm1, which must not fail."""
    def snap(domain, check=False, **options):
        result = run_module("snapshot", dict(uri=kvm1.spec.uri, guest=domain.name(), **options), check=check)
        assert not result.get("failed"), result
        return result
    return snap


def ticks(lab, domain, offset=0):
    """(tick, uptime, load) lines the guest printed on its serial port after byte ``offset``."""
    with open(lab.layout.serial_log(domain.name()), "rb") as log:
        log.seek(offset)
        text = log.read().decode(errors="replace")
    return [(int(n), float(up), int(load)) for n, up, load in TICK.findall(text)]


def log_size(lab, domain):
    return lab.layout.serial_log(domain.name()).stat().st_size


def wait_for_ticks(lab, domain, count, offset=0, timeout=60):
    """Ticks printed after ``offset`` once there are at least ``count`` of them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = ticks(lab, domain, offset)
        if len(seen) >= count:
            return seen
        time.sleep(0.3)
    raise AssertionError(f"{domain.name()} printed fewer than {count} ticks within {timeout} s")


def ticks_after_jump_back(lab, domain, offset, last_tick, count=2, timeout=120):
    """The ticks from the first one lower than those before it (the counter went back), once
    ``count`` of them are printed; ``last_tick`` is the last tick printed before ``offset``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen, highest = ticks(lab, domain, offset), last_tick
        for index, (tick, _up, _load) in enumerate(seen):
            if tick < highest:
                if len(seen) - index >= count:
                    return seen[index:]
                break
            highest = tick
        time.sleep(0.3)
    raise AssertionError(f"{domain.name()}: its tick counter did not go back within {timeout} s")


def last_tick_and_offset(lab, domain):
    """The last tick printed so far, and where the log ends now (in that order: nothing lost between)."""
    last_tick = ticks(lab, domain)[-1][0]
    return last_tick, log_size(lab, domain)


def qemu_pid(domain):
    """The PID of the guest's QEMU (libvirt keeps a guest's domain ID when a revert restarts QEMU)."""
    found = subprocess.run(["pgrep", "-f", f"guest={domain.name()},"], capture_output=True, text=True,
                           timeout=10, check=True).stdout.split()
    assert len(found) == 1, found
    return int(found[0])


def allocation(volume):
    volume.storagePoolLookupByVolume().refresh(0)
    return volume.info()[2]


def test_live_snapshot_brings_back_the_running_guest_and_its_memory(lab, snap, disk_guest, figures):
    domain, volume = disk_guest(boot_load=0)
    # 35 lives in the guest's RAM only: a reboot would come back with the command line's 0
    assert set_load(domain, load=35) == (35, 0)
    args = dict(name="at-35", description="loadd at 35%")

    predicted = snap(domain, check=True, **args)
    assert predicted["changed"] is True and domain.snapshotNum(0) == 0

    size_before = allocation(volume)
    tick_at_snapshot = ticks(lab, domain)[-1][0]
    started = time.monotonic()
    made = snap(domain, **args)
    figures("live snapshot with memory (256 MiB TCG guest)", f"{time.monotonic() - started:.2f} s")
    figures("qcow2 growth for that snapshot", f"{(allocation(volume) - size_before) / MIB:.1f} MiB")
    assert made["diff"] == predicted["diff"]
    assert made["snapshot"]["memory"] is True and made["snapshot"]["state"] == "running"
    assert made["snapshot"]["disks"] == [{"name": "vda", "snapshot": "internal"}]
    assert domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert snap(domain, **args)["changed"] is False

    # a redefinition (new description) on a real daemon leaves a snapshot one can revert to
    described = snap(domain, name="at-35", description="loadd at 35%, before the change")
    assert described["changed"] is True
    assert described["snapshot"]["creation_timestamp"] == made["snapshot"]["creation_timestamp"]

    assert set_load(domain, load=70) == (70, 0)
    wait_for_ticks(lab, domain, 4, log_size(lab, domain))
    last_tick_before, offset = last_tick_and_offset(lab, domain)
    started = time.monotonic()
    reverted = snap(domain, name="at-35", state="reverted")
    figures("revert a running guest to its live snapshot", f"{time.monotonic() - started:.2f} s")
    assert reverted["changed"] is True and reverted["guest_state"] == "running"
    assert domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING

    # libvirt 9.0 may restart QEMU for this (with -loadvm), but the guest does not reboot:
    # its tick counter resumes from where the snapshot was taken (a boot counts from 1)
    resumed = ticks_after_jump_back(lab, domain, offset, last_tick_before)
    assert tick_at_snapshot <= resumed[0][0] <= tick_at_snapshot + 3, (tick_at_snapshot, resumed)
    assert last_tick_before >= tick_at_snapshot + 4
    assert all(load == 35 for _tick, _up, load in resumed)
    # and what loadd holds in RAM is back (not 70: no restore; not 0: a reboot)
    assert set_load(domain) == (35, 0)

    # a paused guest is reverted and stays paused, with the snapshot's memory
    assert set_load(domain, load=70) == (70, 0)
    domain.suspend()
    paused = snap(domain, name="at-35", state="reverted")
    assert paused["guest_state"] == "paused" and domain.state()[0] == libvirt.VIR_DOMAIN_PAUSED
    domain.resume()
    assert set_load(domain) == (35, 0)

    removed = snap(domain, name="at-35", state="absent")
    assert removed["changed"] is True and removed["snapshots"] == []
    assert domain.snapshotNum(0) == 0 and domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert snap(domain, name="at-35", state="absent")["changed"] is False


def test_disk_only_snapshot_of_a_stopped_guest_restores_its_disk(lab, kvm1, snap, disk_guest, figures):
    domain, volume = disk_guest(running=False)
    image = host_path(kvm1, volume.path())
    qemu_io(image, "write -P 0xaa 0 64k")

    made = snap(domain, name="cold")
    assert made["snapshot"]["memory"] is False and made["snapshot"]["state"] == "stopped"

    qemu_io(image, "write -P 0xbb 0 64k")
    reverted = snap(domain, name="cold", state="reverted")
    assert reverted["guest_state"] == "stopped" and not domain.isActive()
    assert holds_pattern(image, 0xaa)

    # a running guest reverted to it is powered off, its disk reverted, and booted again
    qemu_io(image, "write -P 0xcc 0 64k")
    domain.create()
    assert set_load(domain, load=0, timeout=120) == (0, 0)
    wait_for_ticks(lab, domain, 5)
    last_tick_before, offset = last_tick_and_offset(lab, domain)
    qemu_process = qemu_pid(domain)
    started = time.monotonic()
    rebooted = snap(domain, name="cold", state="reverted")
    figures("revert a running guest to a disk-only snapshot", f"{time.monotonic() - started:.2f} s (reboots it)")
    assert rebooted["guest_state"] == "running" and domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert qemu_pid(domain) != qemu_process  # a new QEMU, started on the reverted disk
    assert holds_pattern(image, 0xaa, shared=True)
    booted = ticks_after_jump_back(lab, domain, offset, last_tick_before, count=1)
    assert booted[0][0] <= 2 and booted[0][1] < 15, booted  # a fresh boot counts from 1

    # make an older snapshot current again, on a real daemon
    domain.destroy()
    assert snap(domain, name="later")["snapshot"]["parent"] == "cold"
    assert domain.snapshotCurrent(0).getName() == "later"
    assert snap(domain, name="cold", current=True)["changed"] is True
    assert domain.snapshotCurrent(0).getName() == "cold"
    assert snap(domain, name="cold", current=True)["changed"] is False


def test_raw_disk_is_refused_before_anything_changes(kvm1, run_module, disk_guest):
    domain, volume = disk_guest(running=False)
    root = parse_xml(domain.XMLDesc(0))
    root.find("devices/disk/driver").set("type", "raw")
    domain = domain.connect().defineXML(to_xml(root))
    failed = run_module("snapshot", dict(uri=kvm1.spec.uri, guest=domain.name(), name="x"))
    assert failed["failed"] and "disk vda (raw) is not qcow2" in failed["msg"]
    assert domain.snapshotNum(0) == 0
    listed = subprocess.run(["qemu-img", "snapshot", "-l", str(host_path(kvm1, volume.path()))],
                            capture_output=True, text=True, timeout=60, check=True)
    assert listed.stdout == ""  # no internal snapshot in the image either
