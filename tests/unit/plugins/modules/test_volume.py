"""kvmops.virt.volume on libvirt's test driver: create, overlay, clone, checks and errors.

The test driver cannot resize or upload (lab-notes section 4): growing and uploading for
real is in tests/integration/test_storage.py; here they show that a failure of either
leaves nothing behind, and that check mode predicts them from the options and the image.
"""

import json
import subprocess

import pytest

URI = "test:///default"
POOL = "default-pool"
MIB = 1024 ** 2
GIB = 1024 ** 3


@pytest.fixture(name="pool")
def pool_fixture(driver):
    return driver.storagePoolLookupByName(POOL)


@pytest.fixture(name="vol_name")
def vol_name_fixture(pool, request):
    """A unique volume name; every volume whose name starts with it is deleted afterwards."""
    name = "ut-" + request.node.name.replace("_", "-")[5:40].strip("-")
    yield name
    pool.refresh(0)
    for volume in pool.listAllVolumes(0):
        if volume.name().startswith(name):
            volume.delete(0)


def names(pool):
    return sorted(volume.name() for volume in pool.listAllVolumes(0))


def volume_args(name, **options):
    return dict(uri=URI, pool=POOL, name=name, **options)


def converge(run_module, args):
    """Check mode predicts, the real run changes with the same diff, a second run changes nothing."""
    predicted = run_module("volume", args, check=True)
    assert predicted.get("failed") is not True, predicted
    done = run_module("volume", args)
    assert done.get("failed") is not True, done
    assert predicted["changed"] is True and done["changed"] is True
    assert predicted["diff"] == done["diff"]
    again = run_module("volume", args)
    assert again["changed"] is False, again
    assert again["diff"]["before"] == again["diff"]["after"] == done["diff"]["after"]
    return predicted, done


def make_image(tmp_path, name, fmt, size="64M", backing=None, data_file=None):
    path = tmp_path / name
    command = ["qemu-img", "create", "-q", "-f", fmt]
    if backing:
        command += ["-b", str(backing), "-F", "qcow2"]
    if data_file:
        command += ["-o", f"data_file={data_file}"]
    subprocess.run(command + [str(path), size], check=True)
    return path


def test_empty_qcow2_volume_is_created_once(run_module, pool, vol_name):
    predicted, done = converge(run_module, volume_args(vol_name, size="1 GiB"))
    assert done["diff"] == dict(before={}, after=dict(name=vol_name, pool=POOL, format="qcow2",
                                                      capacity="1 GiB", backing=None))
    assert done["volume"]["path"] == f"/{POOL}/{vol_name}" == predicted["volume"]["path"]
    assert done["volume"]["capacity"] == GIB and done["volume"]["format"] == "qcow2"
    assert predicted["volume"]["allocation"] is None and done["volume"]["allocation"] is not None
    volume = pool.storageVolLookupByName(vol_name)
    assert volume.info()[1] == GIB and "<format type='qcow2'/>" in volume.XMLDesc(0)


def test_a_bare_number_is_mib_and_raw_is_honoured(run_module, vol_name):
    _predicted, done = converge(run_module, volume_args(vol_name, size=512, format="raw"))
    assert done["volume"]["capacity"] == 512 * MIB and done["volume"]["format"] == "raw"
    assert done["diff"]["after"]["capacity"] == "512 MiB"


def test_qcow2_sizes_are_rounded_to_kib_like_libvirt_does(run_module, vol_name):
    _predicted, done = converge(run_module, volume_args(vol_name, size="1000 B"))
    assert done["volume"]["capacity"] == 1024
    assert run_module("volume", volume_args(vol_name, size="1000 B"))["changed"] is False


def test_check_mode_creates_nothing(run_module, pool, vol_name):
    result = run_module("volume", volume_args(vol_name, size="64 MiB"), check=True)
    assert result["changed"] is True
    assert vol_name not in names(pool)


def test_shrinking_is_refused_and_the_volume_stays(run_module, pool, vol_name):
    converge(run_module, volume_args(vol_name, size="64 MiB"))
    for check in (True, False):
        refused = run_module("volume", volume_args(vol_name, size="32 MiB"), check=check)
        assert refused["failed"] is True
        assert refused["msg"].startswith(f"size: volume '{vol_name}' in storage pool '{POOL}' on {URI} is 64 MiB; "
                                         "32 MiB would shrink it, and shrinking a volume loses the data")
    assert pool.storageVolLookupByName(vol_name).info()[1] == 64 * MIB


def test_growing_is_predicted_and_a_failed_resize_changes_nothing(run_module, pool, vol_name):
    converge(run_module, volume_args(vol_name, size="64 MiB"))
    predicted = run_module("volume", volume_args(vol_name, size="128 MiB"), check=True)
    assert predicted["changed"] is True
    assert predicted["diff"]["before"]["capacity"] == "64 MiB" and predicted["diff"]["after"]["capacity"] == "128 MiB"
    assert predicted["volume"]["capacity"] == 128 * MIB
    # the test driver has no virStorageVolResize: a real libvirt error, reported as such
    failed = run_module("volume", volume_args(vol_name, size="128 MiB"))
    assert failed["failed"] is True
    assert failed["msg"].startswith(f"Could not resize volume {vol_name} to {128 * MIB} bytes on {URI}: ")
    assert pool.storageVolLookupByName(vol_name).info()[1] == 64 * MIB


def test_a_full_pool_is_refused_before_creating(run_module, pool, vol_name):
    for check in (True, False):
        refused = run_module("volume", volume_args(vol_name, size="200 GiB"), check=check)
        assert refused["failed"] is True
        assert refused["msg"].startswith(f"storage pool '{POOL}' is too full: volume '{vol_name}' needs 200.0 GiB "
                                         f"({200 * GIB} bytes) and only ")
    assert vol_name not in names(pool)


def test_overcommit_skips_the_room_check_for_thin_volumes(run_module, pool, vol_name):
    # the module lets it through; the test driver itself allocates every volume in full
    # and refuses, which shows the module did call it
    result = run_module("volume", volume_args(vol_name, size="200 GiB", overcommit=True))
    assert result["failed"] is True
    assert result["msg"].startswith(f"Could not create volume {vol_name} in storage pool {POOL} on {URI}: ")
    assert "Not enough free space" in result["msg"]
    refused = run_module("volume", volume_args(vol_name, size="200 GiB", overcommit=True, format="raw"))
    assert "is too full" in refused["msg"]  # raw files are allocated in full: no overcommit
    assert vol_name not in names(pool)


def test_overlay_on_a_volume_of_the_pool(run_module, pool, vol_name):
    converge(run_module, volume_args(vol_name + "-base", size="256 MiB", format="raw"))
    _predicted, done = converge(run_module, volume_args(vol_name + "-overlay", backing=vol_name + "-base"))
    assert done["diff"]["after"] == dict(name=vol_name + "-overlay", pool=POOL, format="qcow2",
                                         capacity="256 MiB", backing=f"/{POOL}/{vol_name}-base")
    xml = pool.storageVolLookupByName(vol_name + "-overlay").XMLDesc(0)
    assert f"<path>/{POOL}/{vol_name}-base</path>" in xml and "<format type='raw'/>" in xml
    # a larger overlay than its backing image is fine, a smaller one is not
    _predicted, larger = converge(run_module, volume_args(vol_name + "-big", backing=vol_name + "-base", size="1 GiB"))
    assert larger["volume"]["capacity"] == GIB
    small = run_module("volume", volume_args(vol_name + "-small", backing=vol_name + "-base", size="1 MiB"))
    assert small["failed"] is True and "the volume cannot be smaller" in small["msg"]
    # the base cannot go while overlays depend on it
    refused = run_module("volume", volume_args(vol_name + "-base", state="absent"))
    assert refused["failed"] is True
    assert f"volume '{vol_name}-overlay' in pool '{POOL}'" in refused["msg"]
    assert vol_name + "-base" in names(pool)


def test_overlay_errors(run_module, pool, vol_name):
    missing = run_module("volume", volume_args(vol_name, backing="no-such-base.qcow2"))
    assert missing["failed"] is True
    assert missing["msg"].startswith(f"backing: volume 'no-such-base.qcow2' does not exist in storage pool '{POOL}' "
                                     f"on {URI} (volumes: ")
    converge(run_module, volume_args(vol_name + "-base", size="16 MiB"))
    raw = run_module("volume", volume_args(vol_name, backing=vol_name + "-base", format="raw"))
    assert raw["msg"].startswith("format: a volume with a backing image must be qcow2, not raw")
    unknown = run_module("volume", volume_args(vol_name, backing="/images/unknown.qcow2"))
    assert unknown["msg"].startswith(f"size: required for volume '{vol_name}'")
    # an existing volume is never rebased
    converge(run_module, volume_args(vol_name, size="16 MiB"))
    rebase = run_module("volume", volume_args(vol_name, backing=vol_name + "-base"))
    assert rebase["failed"] is True and "has no backing image; the module does not rebase volumes" in rebase["msg"]
    assert sorted(n for n in names(pool) if n.startswith(vol_name)) == [vol_name, vol_name + "-base"]


def test_clone_is_a_full_copy_in_the_asked_format(run_module, pool, vol_name):
    converge(run_module, volume_args(vol_name + "-src", size="32 MiB"))
    _predicted, done = converge(run_module, volume_args(vol_name + "-copy", clone_from=vol_name + "-src"))
    assert done["volume"]["format"] == "qcow2" and done["volume"]["capacity"] == 32 * MIB
    assert done["volume"]["backing"] is None
    raw_args = volume_args(vol_name + "-raw", clone_from=f"/{POOL}/{vol_name}-src", format="raw")
    _predicted, raw = converge(run_module, raw_args)
    assert raw["volume"]["format"] == "raw"
    assert "<format type='raw'/>" in pool.storageVolLookupByName(vol_name + "-raw").XMLDesc(0)
    missing = run_module("volume", volume_args(vol_name + "-x", clone_from="nothing-here"))
    assert missing["msg"].startswith("clone_from: volume 'nothing-here' does not exist")


def test_an_existing_volume_keeps_its_format(run_module, vol_name):
    converge(run_module, volume_args(vol_name, size="16 MiB"))
    failed = run_module("volume", volume_args(vol_name, format="raw"))
    assert failed["failed"] is True
    assert failed["msg"].startswith(f"format: volume '{vol_name}' in storage pool '{POOL}' on {URI} is qcow2; "
                                    "the module does not convert volumes")


def test_absent_deletes_once(run_module, pool, vol_name):
    converge(run_module, volume_args(vol_name, size="16 MiB"))
    args = volume_args(vol_name, state="absent")
    predicted = run_module("volume", args, check=True)
    assert predicted["changed"] is True and vol_name in names(pool)
    done = run_module("volume", args)
    assert done["changed"] is True and done["diff"] == predicted["diff"]
    assert done["diff"]["after"] == {} and done["diff"]["before"]["capacity"] == "16 MiB"
    assert vol_name not in names(pool)
    assert run_module("volume", args)["changed"] is False
    gone = run_module("volume", dict(args, pool="no-such-pool"))
    assert gone["changed"] is False and "failed" not in gone


def test_absent_is_refused_while_a_guest_uses_the_volume(run_module, driver, pool, vol_name):
    _predicted, done = converge(run_module, volume_args(vol_name, size="16 MiB"))
    guest = driver.defineXML(
        f"<domain type='test'><name>{vol_name}-guest</name><memory>65536</memory><os><type>hvm</type></os>"
        f"<devices><disk type='volume' device='disk'><source pool='{POOL}' volume='{vol_name}'/>"
        "<target dev='vda' bus='virtio'/></disk></devices></domain>")
    try:
        refused = run_module("volume", volume_args(vol_name, state="absent"), check=True)
        assert refused["failed"] is True
        assert refused["msg"] == (f"volume '{vol_name}' in storage pool '{POOL}' on {URI} is in use by guest "
                                  f"'{vol_name}-guest'; deleting it would break them")
        assert run_module("volume", volume_args(vol_name, state="absent"))["failed"] is True
        assert done["volume"]["name"] in names(pool)
    finally:
        guest.undefine()


def test_upload_is_predicted_from_the_image_and_a_failed_upload_leaves_nothing(run_module, pool, vol_name, tmp_path):
    image = make_image(tmp_path, "disk.qcow2", "qcow2", size="48M")
    args = volume_args(vol_name, upload=str(image))
    predicted = run_module("volume", args, check=True)
    assert predicted["changed"] is True
    assert predicted["diff"]["after"] == dict(name=vol_name, pool=POOL, format="qcow2", capacity="48 MiB",
                                              backing=None)
    assert vol_name not in names(pool)
    # the test driver has no virStorageVolUpload: the volume made for it must go again
    failed = run_module("volume", args)
    assert failed["failed"] is True
    assert failed["msg"].startswith(f"Could not upload {image.stat().st_size} bytes to volume {vol_name} on {URI}: ")
    assert vol_name not in names(pool)
    raw = make_image(tmp_path, "disk.raw", "raw", size="3M")
    predicted = run_module("volume", volume_args(vol_name, upload=str(raw), size="8 MiB"), check=True)
    assert predicted["volume"]["format"] == "raw" and predicted["volume"]["capacity"] == 8 * MIB


def test_upload_errors(run_module, pool, vol_name, tmp_path):
    qcow2 = make_image(tmp_path, "base.qcow2", "qcow2")
    cases = [
        (dict(upload=str(tmp_path / "missing.img")), f"upload: cannot read {tmp_path}/missing.img: No such file"),
        (dict(upload=str(tmp_path)), f"upload: {tmp_path} is not a regular file"),
        (dict(upload=str(make_image(tmp_path, "disk.vmdk", "vmdk"))), "is a vmdk image; only raw and qcow2"),
        (dict(upload=str(make_image(tmp_path, "overlay.qcow2", "qcow2", backing=qcow2))),
         "is a qcow2 overlay that needs a backing file"),
        (dict(upload=str(make_image(tmp_path, "external.qcow2", "qcow2", data_file=tmp_path / "elsewhere.raw"))),
         "is a qcow2 image whose data is in an external file it names"),
        (dict(upload=str(qcow2), format="raw"), f"format: {qcow2} is a qcow2 image, so the volume must be qcow2"),
        (dict(upload=str(qcow2), size="1 MiB"), "but the image"),
        (dict(size="1 GiB", force=True), "force: only applies with upload"),
    ]
    for options, message in cases:
        failed = run_module("volume", volume_args(vol_name, **options))
        assert failed["failed"] is True
        assert message in failed["msg"], (options, failed["msg"])
    assert vol_name not in names(pool)


@pytest.mark.parametrize("options, message", [
    (dict(name="a/b", size=1), "name: 'a/b' is not a usable volume name"),
    (dict(name=".hidden", size=1), "name: '.hidden' is not a usable volume name"),
    (dict(name="", size=1), "name: the volume name must not be empty"),
    (dict(name="ut-x", size="ten gigs"), "size: 'ten gigs' is not a size"),
    (dict(name="ut-x", size="10 GB/s"), "size: '10 GB/s' is not a size"),
    (dict(name="ut-x", size="10 GiBs"), "size: unknown unit 'GiBs'"),
    (dict(name="ut-x", size=0), "size: 0 is no size for a volume"),
    (dict(name="ut-x"), "size: required to create volume 'ut-x'"),
    (dict(name="ut-x", size=1, pool="no-such-pool"), f"storage pool 'no-such-pool' does not exist on {URI} (pools: "),
    (dict(name="ut-x", size=1, backing="b", clone_from="c"), "parameters are mutually exclusive: backing|clone_from"),
    (dict(name="ut-x", size=1, backing="../etc"), "backing: '../etc' is not a usable volume name"),
])
def test_bad_options_fail_before_anything_changes(run_module, pool, options, message):
    before = names(pool)
    args = dict(uri=URI, pool=POOL)
    args.update(options)
    for check in (True, False):
        failed = run_module("volume", args, check=check)
        assert failed["failed"] is True
        assert message in failed["msg"], failed["msg"]
    assert names(pool) == before


def test_a_stopped_pool_is_named_in_the_error(run_module, driver, vol_name):
    pool = driver.storagePoolDefineXML(f"<pool type='dir'><name>{vol_name}</name><target><path>/{vol_name}</path>"
                                       "</target></pool>", 0)
    try:
        failed = run_module("volume", dict(uri=URI, pool=vol_name, name="v", size=1))
        assert failed["msg"] == f"storage pool '{vol_name}' on {URI} is not started"
    finally:
        pool.undefine()


def test_upload_is_not_read_again_once_the_volume_exists(run_module, pool, vol_name, tmp_path):
    converge(run_module, volume_args(vol_name, size="16 MiB"))
    result = run_module("volume", volume_args(vol_name, upload=str(tmp_path / "deleted-since.qcow2")))
    assert result["changed"] is False and "failed" not in result, result
    replaced = run_module("volume", volume_args(vol_name, upload=str(tmp_path / "deleted-since.qcow2"), force=True))
    assert replaced["failed"] is True and "upload: cannot read" in replaced["msg"]
    assert vol_name in names(pool)  # checked before the old volume was deleted


@pytest.mark.parametrize("module, args", [
    ("volume", dict(pool="no-such-pool", name="x", size="1 MiB")),
    ("guest", dict(name="no-such-guest", clone_from="no-such-template")),
])
def test_a_password_in_the_uri_never_reaches_a_failure(run_module, module, args):
    """Messages name the URI as it was given; the one way out on failure masks its password."""
    uri = "test://bob:Pa55-in-uri@/default"
    result = run_module(module, dict(args, uri=uri))
    assert result["failed"], result
    assert "test://bob:***@/default" in result["msg"], result["msg"]
    assert "Pa55-in-uri" not in json.dumps(result)
