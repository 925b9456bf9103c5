"""kvmops.virt.pool on libvirt's test driver: define, build, start, autostart, stop, remove."""

import libvirt
import pytest

URI = "test:///default"


@pytest.fixture(name="pool_name")
def pool_name_fixture(driver, request):
    name = "ut-" + request.node.name.replace("_", "-")[5:45]
    yield name
    remove_pool(driver, name)


def remove_pool(driver, name):
    try:
        pool = driver.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        return
    if pool.isActive():
        for volume in pool.listAllVolumes(0):
            volume.delete(0)
        pool.destroy()
    if pool.isPersistent():
        pool.undefine()


def find(driver, name):
    try:
        return driver.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        return None


def pool_args(name, **options):
    return dict(uri=URI, name=name, **options)


def converge(run_module, args):
    """Check mode, real run, second run; returns the real run's result after asserting the contract."""
    predicted = run_module("pool", args, check=True)
    assert predicted.get("failed") is not True, predicted
    done = run_module("pool", args)
    assert done.get("failed") is not True, done
    assert done["changed"] is True
    assert predicted["changed"] is True
    assert predicted["diff"] == done["diff"]
    again = run_module("pool", args)
    assert again["changed"] is False, again
    assert again["diff"]["before"] == again["diff"]["after"] == done["diff"]["after"]
    return done


def test_dir_pool_is_defined_built_and_started(run_module, driver, pool_name):
    args = pool_args(pool_name, type="dir", path=f"/{pool_name}/")
    predicted = run_module("pool", args, check=True)
    assert find(driver, pool_name) is None  # check mode changed nothing
    assert predicted["pool"]["uuid"] is None and predicted["pool"]["active"] is True

    done = converge(run_module, args)
    assert done["diff"] == dict(before={}, after=dict(
        name=pool_name, type="dir", path=f"/{pool_name}", source=None,
        active=True, autostart=False, persistent=True))
    facts = done["pool"]
    pool = find(driver, pool_name)
    assert facts["uuid"] == pool.UUIDString()
    assert facts["active"] is True and pool.isActive()
    assert facts["persistent"] is True and facts["autostart"] is False
    assert facts["capacity"] == pool.info()[1] > 0
    assert facts["available"] == pool.info()[3]
    assert facts["volumes"] == 0


def test_autostart_stop_and_start_again(run_module, driver, pool_name):
    converge(run_module, pool_args(pool_name, type="dir", path=f"/{pool_name}"))

    done = converge(run_module, pool_args(pool_name, autostart=True))
    assert done["diff"]["before"]["autostart"] is False and done["diff"]["after"]["autostart"] is True
    assert driver.storagePoolLookupByName(pool_name).autostart() == 1

    done = converge(run_module, pool_args(pool_name, active=False))
    assert (done["diff"]["before"]["active"], done["diff"]["after"]["active"]) == (True, False)
    assert done["pool"]["volumes"] is None
    pool = driver.storagePoolLookupByName(pool_name)
    assert not pool.isActive() and pool.autostart() == 1  # autostart left as it was

    converge(run_module, pool_args(pool_name, type="dir"))
    assert driver.storagePoolLookupByName(pool_name).isActive()


def test_absent_stops_and_undefines(run_module, driver, pool_name):
    converge(run_module, pool_args(pool_name, type="dir", path=f"/{pool_name}", autostart=True))
    args = pool_args(pool_name, state="absent")
    predicted = run_module("pool", args, check=True)
    assert predicted["changed"] is True and find(driver, pool_name) is not None
    done = run_module("pool", args)
    assert done["changed"] is True and done["diff"] == predicted["diff"]
    assert done["diff"]["after"] == {} and done["diff"]["before"]["name"] == pool_name
    assert "pool" not in done
    assert find(driver, pool_name) is None
    assert run_module("pool", args)["changed"] is False


def test_absent_with_delete_data_deletes_the_volumes(run_module, driver, pool_name):
    converge(run_module, pool_args(pool_name, type="dir", path=f"/{pool_name}"))
    pool = driver.storagePoolLookupByName(pool_name)
    for name in ("a.qcow2", "b.qcow2"):
        pool.createXML(f"<volume><name>{name}</name><capacity unit='MiB'>8</capacity></volume>", 0)
    done = run_module("pool", pool_args(pool_name, state="absent", delete_data=True))
    assert done["changed"] is True, done
    assert find(driver, pool_name) is None


def test_delete_data_is_refused_while_a_guest_uses_a_volume(run_module, driver, pool_name):
    converge(run_module, pool_args(pool_name, type="dir", path=f"/{pool_name}"))
    pool = driver.storagePoolLookupByName(pool_name)
    volume = pool.createXML("<volume><name>disk.qcow2</name><capacity unit='MiB'>8</capacity></volume>", 0)
    guest = driver.defineXML(
        f"<domain type='test'><name>{pool_name}-guest</name><memory>65536</memory><os><type>hvm</type></os>"
        f"<devices><disk type='file' device='disk'><source file='{volume.path()}'/>"
        "<target dev='vda' bus='virtio'/></disk></devices></domain>")
    try:
        for check in (True, False):
            refused = run_module("pool", pool_args(pool_name, state="absent", delete_data=True), check=check)
            assert refused["failed"] is True
            assert f"in use by guest '{pool_name}-guest'" in refused["msg"]
            assert pool.isActive() and pool.isPersistent() and pool.numOfVolumes() == 1
    finally:
        guest.undefine()


def test_a_transient_pool_is_made_persistent(run_module, driver, pool_name):
    driver.storagePoolCreateXML(f"<pool type='dir'><name>{pool_name}</name><target><path>/{pool_name}</path>"
                                "</target></pool>", 0)
    done = converge(run_module, pool_args(pool_name))
    assert (done["diff"]["before"]["persistent"], done["diff"]["after"]["persistent"]) == (False, True)
    assert driver.storagePoolLookupByName(pool_name).isPersistent()


def test_logical_pool_xml_names_the_volume_group_and_devices(run_module, driver, pool_name):
    args = pool_args(pool_name, type="logical", source_name="vg_" + pool_name[3:13].replace("-", "_"),
                     source_devices=["/dev/fake-disk-b", "/dev/fake-disk-a"], build=False, active=False)
    done = converge(run_module, args)
    vg_name = args["source_name"]
    assert done["diff"]["after"]["path"] == f"/dev/{vg_name}"
    assert done["diff"]["after"]["source"] == dict(name=vg_name, devices=["/dev/fake-disk-b", "/dev/fake-disk-a"])
    xml = driver.storagePoolLookupByName(pool_name).XMLDesc(0)
    assert f"<name>{vg_name}</name>" in xml and "<format type='lvm2'/>" in xml
    assert "<device path='/dev/fake-disk-a'/>" in xml
    # the same devices in another order are the same pool
    again = run_module("pool", dict(args, source_devices=["/dev/fake-disk-a", "/dev/fake-disk-b"]))
    assert again["changed"] is False, again


def test_netfs_and_fs_pool_xml(run_module, driver, pool_name):
    netfs = converge(run_module, pool_args(pool_name, type="netfs", source_host="127.0.0.1", source_dir="/export/vm",
                                           source_format="nfs", path=f"/mnt/{pool_name}", build=False,
                                           active=False))
    assert netfs["diff"]["after"]["source"] == dict(host="127.0.0.1", dir="/export/vm", format="nfs")
    remove_pool(driver, pool_name)
    fs = converge(run_module, pool_args(pool_name, type="fs", source_devices=["/dev/fake-disk"],
                                        path=f"/mnt/{pool_name}", build=False, active=False))
    assert fs["diff"]["after"]["source"] == dict(devices=["/dev/fake-disk"], format="auto")


def test_a_failed_build_leaves_no_pool_behind(run_module, driver, pool_name):
    # The test driver refuses the NO_OVERWRITE flag that every non-dir build uses: a
    # real libvirt failure after the pool was defined, which the module must undo.
    failed = run_module("pool", pool_args(pool_name, type="logical", source_devices=["/dev/fake-disk"]))
    assert failed["failed"] is True
    assert failed["msg"].startswith(f"Could not build storage pool {pool_name} on {URI}: ")
    assert find(driver, pool_name) is None


@pytest.mark.parametrize("options, message", [
    (dict(name="a/b", type="dir", path="/x"), "name: 'a/b' is not a usable storage pool name"),
    (dict(name=".hidden", type="dir", path="/x"), "name: '.hidden' is not a usable storage pool name"),
    (dict(name="", type="dir", path="/x"), "name: the storage pool name must not be empty"),
    (dict(name="ut-rel", type="dir", path="relative/dir"), "path: 'relative/dir' is not an absolute path"),
    (dict(name="ut-notype", path="/x"), "storage pool 'ut-notype' does not exist; type is required"),
    (dict(name="ut-nopath", type="dir"), "a dir pool needs path to be defined"),
    (dict(name="ut-host", type="dir", path="/x", source_host="nfs"), "source_host does not apply to dir pools"),
    (dict(name="ut-lvm", type="logical"), "building a logical pool creates its volume group on source_devices"),
    (dict(name="ut-lvm", type="logical", path="/dev/other"), "a logical pool's path is its volume group's"),
    (dict(name="ut-fs", type="fs", path="/x", source_devices=["/dev/a"], source_format="ntfs"),
     "source_format: 'ntfs' is not a fs pool format"),
    (dict(name="ut-fs", type="fs", path="/x", source_devices=["/dev/a", "/dev/b"]), "an fs pool mounts one device"),
    (dict(name="ut-nfs", type="netfs", path="/x", source_host="nfs"), "a netfs pool needs source_dir"),
])
def test_bad_options_fail_before_anything_changes(run_module, driver, options, message):
    before = sorted(pool.name() for pool in driver.listAllStoragePools())
    for check in (True, False):
        failed = run_module("pool", dict(uri=URI, **options), check=check)
        assert failed["failed"] is True
        assert message in failed["msg"], failed["msg"]
    assert sorted(pool.name() for pool in driver.listAllStoragePools()) == before


def test_an_existing_pool_is_never_moved(run_module, driver, pool_name):
    converge(run_module, pool_args(pool_name, type="dir", path=f"/{pool_name}"))
    for options, difference in ((dict(path="/elsewhere"), f"path /{pool_name}, not /elsewhere"),
                                (dict(type="logical", build=False), "type dir, not logical")):
        failed = run_module("pool", pool_args(pool_name, **options))
        assert failed["failed"] is True
        assert f"storage pool '{pool_name}' on {URI} already exists with {difference}" in failed["msg"]
    assert driver.storagePoolLookupByName(pool_name).isActive()
