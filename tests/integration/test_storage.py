"""kvmops.virt.pool and kvmops.virt.volume on a real lab daemon (kvm1).

What the test driver cannot do: build a pool's directory, grow real qcow2 images, upload
an image through a libvirt stream, make overlays qemu-img reads through, copy volumes,
and an LVM pool on a loop device.

The lab daemon sees /var/lib/libvirt as the host's own .lab/hosts/kvm1/lib, so the
files the modules make are read from there; qemu-img runs inside the daemon's mount
namespace (nsenter) where an overlay's backing path must resolve.
"""

import json
import os
import shutil
import subprocess

import libvirt
import pytest

POOL = "it-storage"
POOL_PATH = "/var/lib/libvirt/kvmops-test-pool"
MIB = 1024 ** 2
MARKER = b"kvmops-upload-marker-7d1f"
MARKER_OFFSET = 5 * MIB + 123  # past the first cluster, so the qcow2 mapping matters


@pytest.fixture(scope="module", name="kvm1")
def kvm1_fixture(lab):
    return lab.host("kvm1")


def host_path(kvm1, path):
    """Where a path under the daemon's /var/lib/libvirt is on this machine."""
    assert path.startswith("/var/lib/libvirt/")
    return kvm1.dir / "lib" / path[len("/var/lib/libvirt/"):]


def in_namespace(kvm1, *command):
    """Run a command in the lab daemon's mount namespace (its view of /var/lib/libvirt)."""
    return subprocess.run(["nsenter", "--target", str(kvm1.pid()), "--mount", *command],
                          capture_output=True, check=True, timeout=120).stdout


def image_info(kvm1, path):
    return json.loads(in_namespace(kvm1, "qemu-img", "info", "-U", "--output=json", path))


def read_as_raw(kvm1, path, tmp_path):
    """The guest-visible bytes of an image (through its backing chain) as raw."""
    out = tmp_path / "as-raw.img"
    staging = f"/var/lib/libvirt/kvmops-it-{os.getpid()}.raw"
    in_namespace(kvm1, "qemu-img", "convert", "-U", "-O", "raw", path, staging)
    try:
        shutil.copyfile(host_path(kvm1, staging), out)
    finally:
        host_path(kvm1, staging).unlink()
    return out.read_bytes()


def remove_pool_everywhere(uri, name):
    conn = libvirt.open(uri)
    try:
        try:
            pool = conn.storagePoolLookupByName(name)
        except libvirt.libvirtError:
            return
        if not pool.isActive():
            pool.create(0)
        for volume in pool.listAllVolumes(0):
            volume.delete(0)
        pool.destroy()
        pool.delete(0)
        pool.undefine()
    finally:
        conn.close()


@pytest.fixture(name="dir_pool")
def dir_pool_fixture(kvm1):
    """Pool options for a dir pool on kvm1; the pool, its volumes and directory go afterwards."""
    uri = kvm1.spec.uri
    remove_pool_everywhere(uri, POOL)
    yield dict(uri=uri, name=POOL, type="dir", path=POOL_PATH)
    remove_pool_everywhere(uri, POOL)
    shutil.rmtree(host_path(kvm1, POOL_PATH), ignore_errors=True)


@pytest.fixture(name="volume_args")
def volume_args_fixture(run_module, dir_pool):
    started = run_module("pool", dir_pool)
    assert started.get("failed") is not True, started
    return lambda name, **options: dict(uri=dir_pool["uri"], pool=POOL, name=name, **options)


@pytest.fixture(name="converge")
def converge_fixture(run_module):
    return lambda module, args: _converge(run_module, module, args)


def _converge(run_module, module, args):
    predicted = run_module(module, args, check=True)
    done = run_module(module, args)
    again = run_module(module, args)
    assert done.get("failed") is not True, done
    assert predicted["changed"] is True and done["changed"] is True, (predicted, done)
    assert predicted["diff"] == done["diff"]
    assert again["changed"] is False, again
    return done


def marked_qcow2(tmp_path, size="16M"):
    """A real qcow2 image whose data holds MARKER, made by qemu-img from a raw file."""
    raw = tmp_path / "marked.raw"
    with open(raw, "wb") as image:
        image.truncate(int(size.rstrip("M")) * MIB)
        image.seek(MARKER_OFFSET)
        image.write(MARKER)
    qcow2 = tmp_path / "marked.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)], check=True)
    return qcow2


def test_dir_pool_is_built_started_autostarted_and_removed_with_its_data(run_module, converge, kvm1, dir_pool):
    directory = host_path(kvm1, POOL_PATH)
    done = converge("pool", dict(dir_pool, autostart=True))
    assert directory.is_dir()  # built
    facts = done["pool"]
    assert facts["active"] and facts["autostart"] and facts["persistent"]
    assert facts["path"] == POOL_PATH and facts["volumes"] == 0
    assert facts["capacity"] > 0 and 0 < facts["available"] <= facts["capacity"]

    stopped = converge("pool", dict(dir_pool, active=False))
    assert stopped["pool"]["active"] is False and stopped["pool"]["volumes"] is None
    converge("pool", dir_pool)

    volume = converge("volume", dict(uri=dir_pool["uri"], pool=POOL, name="scratch.qcow2", size="8 MiB"))
    assert (directory / "scratch.qcow2").is_file()
    assert volume["volume"]["path"] == f"{POOL_PATH}/scratch.qcow2"

    removed = run_module("pool", dict(uri=dir_pool["uri"], name=POOL, state="absent", delete_data=True))
    assert removed["changed"] is True, removed
    assert not directory.exists()
    assert run_module("pool", dict(uri=dir_pool["uri"], name=POOL, state="absent"))["changed"] is False


def test_a_pool_that_cannot_start_is_not_left_defined(run_module, kvm1, dir_pool):
    # build: false and a directory that does not exist: defining works, starting fails
    failed = run_module("pool", dict(dir_pool, path="/var/lib/libvirt/kvmops-no-such-dir", build=False))
    assert failed["failed"] is True
    assert failed["msg"].startswith(f"Could not start storage pool {POOL} on {kvm1.spec.uri}: ")
    conn = libvirt.open(kvm1.spec.uri)
    try:
        assert POOL not in [pool.name() for pool in conn.listAllStoragePools()]
    finally:
        conn.close()


def test_volume_is_created_then_grown_for_real(run_module, converge, kvm1, volume_args):
    done = converge("volume", volume_args("grow.qcow2", size="64 MiB"))
    path = done["volume"]["path"]
    assert image_info(kvm1, path)["virtual-size"] == 64 * MIB
    assert image_info(kvm1, path)["format"] == "qcow2"

    grown = converge("volume", volume_args("grow.qcow2", size="1.5 GiB"))
    assert grown["diff"]["before"]["capacity"] == "64 MiB" and grown["diff"]["after"]["capacity"] == "1536 MiB"
    assert grown["volume"]["capacity"] == 1536 * MIB
    assert image_info(kvm1, path)["virtual-size"] == 1536 * MIB

    refused = run_module("volume", volume_args("grow.qcow2", size="1 GiB"))
    assert refused["failed"] is True and "shrinking a volume loses the data" in refused["msg"]
    assert image_info(kvm1, path)["virtual-size"] == 1536 * MIB


def test_upload_overlay_and_clone_of_a_real_image(run_module, converge, kvm1, volume_args, tmp_path, figures):
    image = marked_qcow2(tmp_path)
    local_bytes = image.read_bytes()

    uploaded = converge("volume", volume_args("base.qcow2", upload=str(image)))
    facts = uploaded["volume"]
    assert facts["format"] == "qcow2" and facts["capacity"] == 16 * MIB
    stored = host_path(kvm1, facts["path"]).read_bytes()
    figures("volume upload of a qcow2 image (lab, kvm1)", f"{len(local_bytes)} bytes, file identical")
    assert stored[:len(local_bytes)] == local_bytes
    guest_view = read_as_raw(kvm1, facts["path"], tmp_path)
    assert guest_view[MARKER_OFFSET:MARKER_OFFSET + len(MARKER)] == MARKER

    overlay = converge("volume", volume_args("web-1.qcow2", backing="base.qcow2", size="32 MiB"))
    info = image_info(kvm1, overlay["volume"]["path"])
    assert info["backing-filename"] == facts["path"] and info["virtual-size"] == 32 * MIB
    assert overlay["volume"]["backing"] == facts["path"]
    through_overlay = read_as_raw(kvm1, overlay["volume"]["path"], tmp_path)
    assert through_overlay[MARKER_OFFSET:MARKER_OFFSET + len(MARKER)] == MARKER

    clone = converge("volume", volume_args("copy.raw", clone_from="base.qcow2", format="raw"))
    assert clone["volume"]["format"] == "raw" and clone["volume"]["backing"] is None
    copied = host_path(kvm1, clone["volume"]["path"]).read_bytes()
    assert len(copied) == 16 * MIB and copied[MARKER_OFFSET:MARKER_OFFSET + len(MARKER)] == MARKER

    # the base has an overlay: it can be neither deleted nor replaced
    refused = run_module("volume", volume_args("base.qcow2", state="absent"))
    assert refused["failed"] is True and "volume 'web-1.qcow2' in pool 'it-storage'" in refused["msg"]
    refused = run_module("volume", volume_args("base.qcow2", upload=str(image), force=True))
    assert refused["failed"] is True and "replacing it would break them" in refused["msg"]


def test_upload_with_force_replaces_and_a_larger_size_grows(run_module, converge, kvm1, volume_args, tmp_path):
    image = marked_qcow2(tmp_path)
    converge("volume", volume_args("disk.qcow2", upload=str(image), size="48 MiB"))
    path = f"{POOL_PATH}/disk.qcow2"
    assert image_info(kvm1, path)["virtual-size"] == 48 * MIB

    replaced = run_module("volume", volume_args("disk.qcow2", upload=str(image), force=True))
    assert replaced["changed"] is True
    assert replaced["diff"]["before"]["capacity"] == "48 MiB" and replaced["diff"]["after"]["capacity"] == "16 MiB"
    assert image_info(kvm1, path)["virtual-size"] == 16 * MIB
    assert read_as_raw(kvm1, path, tmp_path)[MARKER_OFFSET:MARKER_OFFSET + len(MARKER)] == MARKER


def test_raw_upload_lands_byte_for_byte(converge, kvm1, volume_args, tmp_path):
    raw = tmp_path / "disk.raw"
    raw.write_bytes(os.urandom(3 * MIB + 512))
    done = converge("volume", volume_args("disk.raw", upload=str(raw)))
    assert done["volume"]["format"] == "raw" and done["volume"]["capacity"] == 3 * MIB + 512
    assert host_path(kvm1, done["volume"]["path"]).read_bytes() == raw.read_bytes()


def test_a_backing_path_that_does_not_exist_fails_and_leaves_nothing(run_module, kvm1, volume_args):
    failed = run_module("volume", volume_args("orphan.qcow2", backing="/var/lib/libvirt/no-such-base.qcow2",
                                              size="8 MiB"))
    assert failed["failed"] is True
    assert failed["msg"].startswith(f"Could not create volume orphan.qcow2 in storage pool {POOL} on {kvm1.spec.uri}: ")
    assert "no-such-base.qcow2" in failed["msg"]
    assert not host_path(kvm1, f"{POOL_PATH}/orphan.qcow2").exists()


# --- LVM -------------------------------------------------------------------------------------
# The machines this project runs on have no device-mapper in their kernel: LVM can write
# physical volume labels and volume groups (so libvirt builds, starts, stops and deletes a
# logical pool for real), but cannot activate a logical volume, so creating a volume in
# the pool fails. That failure is checked too: it must leave nothing behind.

LVM_POOL = "it-lvm"
LVM_VG = "kvmops_it_vg"


def _run(*command):
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def _vg_exists():
    return _run("vgs", "--noheadings", "-o", "vg_name", LVM_VG).returncode == 0


@pytest.fixture(name="loop_device")
def loop_device_fixture(kvm1, tmp_path):
    backing = tmp_path / "pv.img"
    with open(backing, "wb") as image:
        image.truncate(64 * MIB)
    attached = _run("losetup", "--find", "--show", str(backing))
    assert attached.returncode == 0, attached.stderr
    device = attached.stdout.strip()
    yield device
    remove_pool_everywhere_quietly(kvm1.spec.uri, LVM_POOL)
    if _vg_exists():
        _run("vgremove", "--force", LVM_VG)
    _run("pvremove", "--force", "--yes", device)
    _run("losetup", "--detach", device)


def remove_pool_everywhere_quietly(uri, name):
    conn = libvirt.open(uri)
    try:
        pool = conn.storagePoolLookupByName(name)
        if pool.isActive():
            pool.destroy()
        pool.undefine()
    except libvirt.libvirtError:
        pass  # not there, which is what the clean-up wants
    finally:
        conn.close()


def test_logical_pool_on_a_loop_device(run_module, converge, kvm1, loop_device):
    uri = kvm1.spec.uri
    args = dict(uri=uri, name=LVM_POOL, type="logical", source_name=LVM_VG, source_devices=[loop_device],
                autostart=True)
    done = converge("pool", args)
    assert _vg_exists()
    facts = done["pool"]
    assert facts["path"] == f"/dev/{LVM_VG}" and facts["active"] and facts["autostart"]
    assert facts["source"] == dict(name=LVM_VG, devices=[loop_device])
    assert 56 * MIB <= facts["capacity"] <= 64 * MIB and facts["volumes"] == 0

    # an existing volume group is never built again: the same task is a no-op
    assert run_module("pool", dict(args, build=True))["changed"] is False

    qcow2 = run_module("volume", dict(uri=uri, pool=LVM_POOL, name="lv1", size="8 MiB", format="qcow2"))
    assert qcow2["failed"] is True and "whose volumes are raw" in qcow2["msg"]
    full = run_module("volume", dict(uri=uri, pool=LVM_POOL, name="lv1", size="1 GiB"))
    assert full["failed"] is True and f"storage pool '{LVM_POOL}' is too full" in full["msg"]
    made = run_module("volume", dict(uri=uri, pool=LVM_POOL, name="lv1", size="8 MiB"))
    if made.get("failed"):
        assert made["msg"].startswith(f"Could not create volume lv1 in storage pool {LVM_POOL} on {uri}: ")
        assert "device-mapper" in made["msg"]
        assert "lv1" not in _run("lvs", "--noheadings", "-o", "lv_name", LVM_VG).stdout
    else:  # a kernel with device-mapper
        assert made["volume"]["capacity"] == 8 * MIB and made["volume"]["path"] == f"/dev/{LVM_VG}/lv1"

    removed = run_module("pool", dict(uri=uri, name=LVM_POOL, state="absent", delete_data=True))
    assert removed["changed"] is True, removed
    assert not _vg_exists()
    assert "LVM2_member" not in _run("blkid", "-p", loop_device).stdout
