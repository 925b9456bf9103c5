"""The lab guest sees what the guest module gives it: disks, a cloud-init seed, balloon, vCPUs.

The guest's init prints what it found on its serial port (logged by QEMU to the lab's
guests directory) and loadd's tick reports MemTotal and the online vCPUs, so every check
here is what the guest kernel itself saw: a marker read from a virtio disk, a NoCloud
seed written by ``cloud_init.render_seed`` and read through the guest's isofs, memory
taken away by the virtio balloon, a vCPU hot-plugged through libvirt and brought online.
"""

import hashlib
import shutil
import subprocess
import time
from dataclasses import dataclass

import libvirt
import pytest

from ansible_collections.kvmops.virt.plugins.module_utils.cloud_init import render_seed, seed_texts
from ansible_collections.kvmops.virt.plugins.module_utils.safe_xml import parse_xml, sub_element, to_xml
from lab.connection import open_lab_connection
from lab.guests import guest_xml
from lab.image import ensure_image
from serial_log import SerialLog

HOST = "kvm1"
MEMORY_MIB = 256
BALLOON_MIB = 160
MAX_VCPUS = 2
MARKER = "kvmops-disk: hello"
LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE


@dataclass
class BootedGuest:
    conn: object
    dom: object
    log: SerialLog
    seed: tuple
    seconds_to_first_tick: float


def _disk(devices, source, target, bus, device="disk", driver_type="raw", readonly=False):
    disk = sub_element(devices, "disk", type="file", device=device)
    sub_element(disk, "driver", name="qemu", type=driver_type)
    sub_element(disk, "source", file=str(source))
    sub_element(disk, "target", dev=target, bus=bus)
    if readonly:
        sub_element(disk, "readonly")


def guest_with_devices(lab, name, machine, cdrom_bus, files, disks=True, balloon=True):
    """The lab's guest XML plus virtio disks, a seed CD-ROM, a balloon and a spare vCPU."""
    vmlinuz, initrd = ensure_image(lab.layout)
    root = parse_xml(guest_xml(name, lab.layout, vmlinuz, initrd, vcpus=MAX_VCPUS, memory_mib=MEMORY_MIB),
                     "lab guest XML")
    root.find("os/type").set("machine", machine)
    root.find("vcpu").set("current", "1")
    devices = root.find("devices")
    devices.remove(devices.find("memballoon"))
    if cdrom_bus == "scsi" or disks:
        # libvirt's default SCSI controller (lsilogic) has no driver in the guest's kernel
        sub_element(devices, "controller", type="scsi", model="virtio-scsi")
    if disks:
        _disk(devices, files["marked"], "vda", "virtio", driver_type="qcow2")
        _disk(devices, files["unmarked"], "vdb", "virtio")
        _disk(devices, files["scsi"], "sdb", "scsi")
    _disk(devices, files["seed"], {"scsi": "sda", "ide": "hdc"}[cdrom_bus], cdrom_bus, device="cdrom", readonly=True)
    sub_element(devices, "memballoon", model="virtio" if balloon else "none")
    return to_xml(root)


def make_files(directory, name):
    """A qcow2 disk whose first line is the marker, raw disks with and without one, a seed ISO."""
    directory.mkdir(parents=True, exist_ok=True)
    raw = directory / "marked.raw"
    raw.write_bytes((MARKER + "\n").encode().ljust(1024 * 1024, b"\0"))
    marked = directory / "marked.qcow2"
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(marked)], check=True)
    unmarked = directory / "unmarked.raw"
    unmarked.write_bytes(b"just data, no marker\n".ljust(1024 * 1024, b"\0"))
    scsi = directory / "scsi.raw"
    scsi.write_bytes(b"kvmops-disk: on virtio-scsi\n".ljust(1024 * 1024, b"\0"))
    # A user-data of many sectors with UTF-8 text, so isofs has to read across sectors.
    user_data = {"write_files": [{"path": "/etc/motd", "content": "Grüße aus dem Labor 🚀\n" * 8000}],
                 "users": [{"name": "ops"}]}
    seed = seed_texts(user_data, {"region": "lab"}, {"version": 2, "ethernets": {}}, hostname=name)
    iso = directory / "seed.iso"
    iso.write_bytes(render_seed(*seed))
    return {"marked": marked, "unmarked": unmarked, "scsi": scsi, "seed": iso}, seed


def boot(lab, name, files_dir, machine, cdrom_bus, **options):
    files, seed = make_files(files_dir, name)
    log = SerialLog(lab.layout.serial_log(name))
    lab.layout.guests_dir.mkdir(parents=True, exist_ok=True)
    log.path.unlink(missing_ok=True)
    conn = open_lab_connection(lab.host(HOST).spec.uri)
    try:
        dom = conn.defineXML(guest_with_devices(lab, name, machine, cdrom_bus, files, **options))
        started = time.monotonic()
        dom.create()
        log.wait_for_tick(lambda tick: True, timeout=90)  # booted, devices reported, loadd running
    except BaseException:
        conn.close()
        raise
    return BootedGuest(conn, dom, log, seed, time.monotonic() - started)


def remove(lab, name, files_dir, guest=None):
    """The guest from every lab host, then its files and serial log."""
    if guest is not None:
        guest.conn.close()
    lab.remove_guest_if_defined(name)
    shutil.rmtree(files_dir, ignore_errors=True)
    lab.layout.serial_log(name).unlink(missing_ok=True)


def sha256(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.fixture(scope="module")
def q35_guest(lab, tmp_path_factory, figures):
    """One q35 guest: two virtio disks, a SCSI disk and seed CD-ROM on virtio-scsi, a balloon, 1 of 2 vCPUs."""
    name = "it-guest-devices"
    files_dir = tmp_path_factory.mktemp("guest-devices")
    remove(lab, name, files_dir)  # left over from an interrupted run
    guest = None
    try:
        guest = boot(lab, name, files_dir, "q35", "scsi")
        figures("q35 lab guest with 3 disks, seed CD-ROM (virtio-scsi) and balloon: first tick",
                f"{guest.seconds_to_first_tick:.1f} s after start, at guest uptime {guest.log.ticks()[0].uptime:.1f} s")
        yield guest
    finally:
        remove(lab, name, files_dir, guest)


def test_guest_reads_the_marker_of_each_disk(q35_guest):
    assert q35_guest.log.line("disk vda ") == "marker=" + MARKER
    assert q35_guest.log.line("disk vdb ") == "marker=none"
    # the SCSI CD-ROM is sr0, so the guest names the SCSI disk sda whatever libvirt calls it
    assert q35_guest.log.line("disk sda ") == "marker=kvmops-disk: on virtio-scsi"


def test_guest_reads_the_cloud_init_seed_through_isofs(q35_guest):
    seed = q35_guest.seed
    assert len(seed.user_data.encode()) > 100 * 2048
    assert q35_guest.log.line("cidata ") == (
        f"user-data={sha256(seed.user_data)} meta-data={sha256(seed.meta_data)} "
        "files=meta-data network-config user-data")


def test_balloon_takes_memory_away_from_the_guest_and_gives_it_back(q35_guest):
    dom, log = q35_guest.dom, q35_guest.log
    full = log.ticks()[-1].mem_total_kib
    taken = (MEMORY_MIB - BALLOON_MIB) * 1024
    since = log.size()
    dom.setMemoryFlags(BALLOON_MIB * 1024, LIVE)
    log.wait_for_tick(lambda tick: tick.mem_total_kib == full - taken, since, what=f"MemTotal {full - taken} kB")
    assert dom.memoryStats()["actual"] == BALLOON_MIB * 1024

    since = log.size()
    dom.setMemoryFlags(MEMORY_MIB * 1024, LIVE)
    log.wait_for_tick(lambda tick: tick.mem_total_kib == full, since, what=f"MemTotal back at {full} kB")
    assert dom.memoryStats()["actual"] == MEMORY_MIB * 1024


def test_hot_plugged_vcpu_comes_online_and_gets_a_worker(q35_guest):
    dom, log = q35_guest.dom, q35_guest.log
    assert log.ticks()[-1].cpus_online == 1
    since = log.size()
    dom.setVcpusFlags(2, LIVE)
    log.wait_for_tick(lambda tick: tick.cpus_online == 2 and tick.workers == 2, since,
                      what="2 vCPUs online, each with a load worker")
    assert dom.vcpusFlags(LIVE) == 2


@pytest.mark.parametrize("cdrom_bus", ["scsi", "ide"])
def test_seed_cdrom_is_read_on_machine_type_pc(lab, guest_name, tmp_path, cdrom_bus, figures):
    files_dir = tmp_path / "files"
    guest = None
    try:
        guest = boot(lab, guest_name, files_dir, "pc", cdrom_bus, disks=False, balloon=False)
        figures(f"pc lab guest with a seed CD-ROM on {cdrom_bus}: first tick",
                f"{guest.seconds_to_first_tick:.1f} s after start, at guest uptime {guest.log.ticks()[0].uptime:.1f} s")
        seed = guest.seed
        assert guest.log.line("cidata ") == (
            f"user-data={sha256(seed.user_data)} meta-data={sha256(seed.meta_data)} "
            "files=meta-data network-config user-data")
    finally:
        remove(lab, guest_name, files_dir, guest)


def test_a_plain_lab_guest_reports_no_disk_and_no_seed(lab, guest_name):
    try:
        lab.create_guest(guest_name, HOST)
        log = SerialLog(lab.layout.serial_log(guest_name))
        assert log.line("cidata ") == "none"
        assert "kvmops-lab: disk " not in log.text()
    finally:
        lab.remove_guest_if_defined(guest_name)
        lab.layout.serial_log(guest_name).unlink(missing_ok=True)
