"""cloud-init NoCloud seeds, checked with tools that read ISO 9660 their own way.

isoinfo (genisoimage) lists and extracts both directory trees, isovfy checks the
structure, blkid (util-linux) probes the label, and where this kernel has isofs the
image is loop-mounted. The lab integration test ``test_lab_guest_devices.py`` also boots
a guest with a seed on a CD-ROM and reads it through the guest kernel's isofs.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ansible_collections.kvmops.virt.plugins.module_utils.cloud_init import (
    CLOUD_CONFIG_HEADER,
    CloudInitError,
    SECTOR,
    build_iso9660,
    render_seed,
    seed_texts,
)

needs_isoinfo = pytest.mark.skipif(shutil.which("isoinfo") is None,
                                   reason="isoinfo missing: install genisoimage (bindep.txt)")

SIZES = {"0 bytes": 0, "1 byte": 1, "one sector": 2048, "one sector and a byte": 2049, "200 KiB": 200 * 1024}


def text_of_size(size, seed):
    """ASCII text of exactly ``size`` bytes that differs between seeds and along the file."""
    pattern = "".join("%s-%05d\n" % (seed, line) for line in range(size // 8 + 2))
    return pattern[:size]


def isoinfo(image_path, *args):
    done = subprocess.run(["isoinfo", "-i", str(image_path), *args], capture_output=True, check=True)
    return done.stdout


def write_image(tmp_path, image, name="seed.iso"):
    path = tmp_path / name
    path.write_bytes(image)
    return path


def listed_names(listing):
    names = []
    for line in listing.decode().splitlines():
        if line.startswith(("-", "d")):
            names.append(line.split("]", 1)[1].strip())
    return names


# --- the image, read by other tools -------------------------------------------------------

@needs_isoinfo
def test_joliet_tree_shows_the_cloud_init_names(tmp_path):
    path = write_image(tmp_path, render_seed("#cloud-config\n", "instance-id: a\n", "version: 2\n", "#cloud-config\n"))
    names = listed_names(isoinfo(path, "-J", "-l"))
    assert names == [".", "..", "meta-data", "network-config", "user-data", "vendor-data"]


@needs_isoinfo
def test_plain_iso9660_tree_has_level_1_names(tmp_path):
    path = write_image(tmp_path, render_seed("u", "m", "n", "v"))
    names = listed_names(isoinfo(path, "-l"))
    assert names == [".", "..", "META_DAT.;1", "NETWORK_.;1", "USER_DAT.;1", "VENDOR_D.;1"]
    assert isoinfo(path, "-x", "/USER_DAT.;1") == b"u"


@needs_isoinfo
def test_optional_files_are_left_out_when_none(tmp_path):
    path = write_image(tmp_path, render_seed("u", "m"))
    assert listed_names(isoinfo(path, "-J", "-l")) == [".", "..", "meta-data", "user-data"]


@needs_isoinfo
@pytest.mark.parametrize("size", SIZES.values(), ids=list(SIZES))
def test_extraction_returns_each_file_exactly(tmp_path, size):
    texts = {name: text_of_size(size, name[:4]) for name in ("user-data", "meta-data", "network-config", "vendor-data")}
    path = write_image(tmp_path, render_seed(texts["user-data"], texts["meta-data"],
                                             texts["network-config"], texts["vendor-data"]))
    for name, text in texts.items():
        assert isoinfo(path, "-J", "-x", "/" + name) == text.encode()
    assert path.stat().st_size % SECTOR == 0


@needs_isoinfo
def test_files_of_mixed_sizes_do_not_overlap(tmp_path):
    texts = [text_of_size(size, str(index)) for index, size in enumerate((0, 2049, 1, 200 * 1024))]
    path = write_image(tmp_path, render_seed(*texts))
    for name, text in zip(("user-data", "meta-data", "network-config", "vendor-data"), texts):
        assert isoinfo(path, "-J", "-x", "/" + name) == text.encode()


@needs_isoinfo
def test_utf8_text_is_written_byte_for_byte(tmp_path):
    user_data = "#cloud-config\nwrite_files: [{path: /etc/motd, content: \"Grüße, 世界 🚀\\n\"}]\n"
    meta_data = "instance-id: é\n"
    path = write_image(tmp_path, render_seed(user_data, meta_data))
    assert isoinfo(path, "-J", "-x", "/user-data") == user_data.encode("utf-8")
    assert isoinfo(path, "-J", "-x", "/meta-data") == meta_data.encode("utf-8")


@needs_isoinfo
def test_volume_id_is_cidata(tmp_path):
    path = write_image(tmp_path, render_seed("u", "m"))
    description = isoinfo(path, "-d").decode()
    assert "Volume id: cidata\n" in description
    assert "Joliet with UCS level 3 found" in description


@pytest.mark.skipif(shutil.which("blkid") is None, reason="blkid (util-linux) missing")
def test_blkid_probes_an_iso9660_filesystem_labelled_cidata(tmp_path):
    path = write_image(tmp_path, render_seed("u", "m"))
    done = subprocess.run(["blkid", "-p", "-o", "export", str(path)], capture_output=True, text=True, check=True)
    probed = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    assert probed["TYPE"] == "iso9660"
    assert probed["LABEL"] == "cidata"
    assert probed["VERSION"] == "Joliet\\ Extension"  # export format escapes the space


@pytest.mark.skipif(shutil.which("isovfy") is None, reason="isovfy missing: install genisoimage (bindep.txt)")
@pytest.mark.parametrize("size", SIZES.values(), ids=list(SIZES))
def test_isovfy_finds_no_errors(tmp_path, size):
    path = write_image(tmp_path, render_seed(text_of_size(size, "u"), "m", None, text_of_size(size, "v")))
    done = subprocess.run(["isovfy", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "No errors found" in done.stdout, done.stdout + done.stderr


@needs_isoinfo
def test_a_directory_of_many_files_spans_sectors_without_splitting_records(tmp_path):
    files = [("file-%03d" % index, ("content %d\n" % index).encode()) for index in range(120)]
    path = write_image(tmp_path, build_iso9660("many", files))
    joliet_names = listed_names(isoinfo(path, "-J", "-l"))
    assert joliet_names == [".", ".."] + [name for name, _data in files]
    assert len(listed_names(isoinfo(path, "-l"))) == 122
    for name, data in (files[0], files[60], files[-1]):
        assert isoinfo(path, "-J", "-x", "/" + name) == data


def test_names_that_collide_in_iso9660_are_refused():
    with pytest.raises(ValueError, match=r"'user-data-1' and 'user-data-2' both become USER_DAT.;1"):
        build_iso9660("x", [("user-data-1", b""), ("user-data-2", b"")])


def _can_mount_iso9660():
    if os.geteuid() != 0:
        return "loop-mounting needs root"
    filesystems = Path("/proc/filesystems").read_text()
    if "iso9660" not in filesystems:
        return ("this kernel has no isofs (iso9660 is not in /proc/filesystems); "
                "tests/integration/test_lab_guest_devices.py reads seeds through a lab guest's isofs instead")
    return None


@pytest.mark.skipif(_can_mount_iso9660() is not None, reason=str(_can_mount_iso9660()))
def test_linux_isofs_mounts_the_image_and_reads_the_files(tmp_path):
    texts = [text_of_size(2049, "u"), text_of_size(0, "m"), text_of_size(200 * 1024, "n"), "🚀\n"]
    path = write_image(tmp_path, render_seed(*texts))
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "iso9660", "-o", "loop,ro", str(path), str(mountpoint)], check=True)
    try:
        assert sorted(os.listdir(mountpoint)) == ["meta-data", "network-config", "user-data", "vendor-data"]
        for name, text in zip(("user-data", "meta-data", "network-config", "vendor-data"), texts):
            assert (mountpoint / name).read_bytes() == text.encode()
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


# --- determinism --------------------------------------------------------------------------

def test_same_texts_give_identical_bytes_in_another_process():
    texts = seed_texts({"users": [{"name": "ops"}], "packages": ["htop"]}, {"region": "lab"},
                       {"version": 2}, hostname="web-1")
    here = hashlib.sha256(render_seed(*texts)).hexdigest()
    program = (
        "import hashlib, sys\n"
        "from ansible_collections.kvmops.virt.plugins.module_utils.cloud_init import render_seed, seed_texts\n"
        "texts = seed_texts({'packages': ['htop'], 'users': [{'name': 'ops'}]}, {'region': 'lab'},"
        " {'version': 2}, hostname='web-1')\n"
        "print(hashlib.sha256(render_seed(*texts)).hexdigest())\n"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=os.pathsep.join(sys.path))
    there = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, check=True)
    assert there.stdout.strip() == here


def test_different_texts_give_different_images():
    assert render_seed("a", "m") != render_seed("b", "m")
    assert render_seed("a", "m") != render_seed("a", "m", "n")


@needs_isoinfo
def test_timestamps_are_fixed(tmp_path):
    path = write_image(tmp_path, render_seed("u", "m"))
    for line in isoinfo(path, "-J", "-l").decode().splitlines():
        if line.startswith(("-", "d")):
            assert "Jan  1 2000" in line


# --- texts --------------------------------------------------------------------------------

def test_dict_user_data_is_cloud_config_json():
    user_data = {"users": [{"name": "ops", "sudo": "ALL=(ALL) NOPASSWD:ALL"}], "package_update": True}
    text = seed_texts(user_data).user_data
    assert text.startswith(CLOUD_CONFIG_HEADER)
    body = text[len(CLOUD_CONFIG_HEADER):]
    assert json.loads(body) == user_data
    assert yaml.safe_load(text) == user_data


def test_string_user_data_is_taken_as_it_is():
    script = "#!/bin/sh\necho hello > /tmp/hello\n"
    assert seed_texts(script).user_data == script


def test_missing_user_data_is_empty_and_meta_data_gets_defaults():
    texts = seed_texts(hostname="web-1")
    assert texts.user_data == ""
    assert yaml.safe_load(texts.meta_data) == {"instance-id": "web-1", "local-hostname": "web-1"}
    assert texts.network_config is None


def test_meta_data_keys_given_win_over_the_defaults():
    texts = seed_texts(None, {"instance-id": "iid-7", "region": "lab"}, hostname="web-1")
    assert yaml.safe_load(texts.meta_data) == {"instance-id": "iid-7", "local-hostname": "web-1", "region": "lab"}


def test_instance_id_can_be_given_apart_from_the_hostname():
    texts = seed_texts(None, None, hostname="web-1", instance_id="6695eb01-f6a4-8304-79aa-97f2502e193f")
    assert yaml.safe_load(texts.meta_data)["instance-id"] == "6695eb01-f6a4-8304-79aa-97f2502e193f"


def test_string_meta_data_and_network_config_are_taken_as_they_are():
    texts = seed_texts(None, "instance-id: x\n", "version: 2\nethernets: {}\n", hostname="ignored")
    assert texts.meta_data == "instance-id: x\n"
    assert texts.network_config == "version: 2\nethernets: {}\n"


def test_dict_network_config_is_json():
    config = {"version": 2, "ethernets": {"eth0": {"dhcp4": True, "addresses": ["192.0.2.10/24"]}}}
    text = seed_texts(None, None, config).network_config
    assert json.loads(text) == config and yaml.safe_load(text) == config


def test_key_order_does_not_change_the_text():
    assert seed_texts({"a": 1, "b": 2}).user_data == seed_texts({"b": 2, "a": 1}).user_data


TRICKY = {
    "yaml 1.1 booleans stay strings": ["yes", "no", "on", "off", "y", "n", "True", "NULL", "~"],
    "number-like strings": ["0777", "1_000", "0x1F", "1e3", "12:30:00", ".5", "+1"],
    "floats with exponents": [1e16, 1e-05, 1.5e300, -2e-10, 0.1, 12.0],
    "integers": [0, -1, 10 ** 30],
    "quotes and escapes": ["a \"quoted\" \\ backslash", "tab\there", "new\nline", "\x00\x01\x1f"],
    "unicode": ["Grüße", "世界", "🚀", "\u00a0nbsp"],
    "line breaks yaml folds": ["a\u2028b", "a\u2029b", "a\x85b"],
    "characters yaml rejects raw": ["\x7f", "\x80\x9f", "\ufffe\uffff"],
    "structure": {"nested": {"list": [[], {}, [1, [2, {"x": None}]]]}, "": "empty key"},
    "key: with colon": {"#comment-like": "- dash", "[brackets]": "{braces}"},
}


@pytest.mark.parametrize("case", list(TRICKY))
def test_json_reads_back_unchanged_through_yaml_1_1(case):
    user_data = {case: TRICKY[case]}
    text = seed_texts(user_data).user_data
    assert yaml.safe_load(text) == user_data
    assert json.loads(text[len(CLOUD_CONFIG_HEADER):]) == user_data


@pytest.mark.parametrize("value, message", [
    ({"mtu": float("nan")}, "cloud_init.user_data.mtu: nan is not a number cloud-init can read"),
    ({"x": [1, float("inf")]}, r"cloud_init.user_data.x\[1\]: inf is not a number"),
    ({"files": {b"raw"}}, "cloud_init.user_data.files: a set cannot be written to cloud-init"),
    ({1: "one"}, "cloud_init.user_data: key 1 is a int; cloud-init keys must be strings"),
    ({"k" * 2000: 1}, "cloud_init.user_data: key 'kkkk.* is longer than YAML allows"),
    (["not", "a", "dict"], "cloud_init.user_data must be a dict .cloud-config. or a string .used as it is., not list"),
    (42, "cloud_init.user_data must be a dict .* not int"),
])
def test_user_data_that_cannot_be_written_is_refused_with_its_place(value, message):
    with pytest.raises(CloudInitError, match=message):
        seed_texts(value)


def test_meta_data_and_network_config_of_the_wrong_type_are_refused():
    with pytest.raises(CloudInitError, match="guest.cloud_init.meta_data must be a dict or a string"):
        seed_texts(None, ["x"], option="guest.cloud_init")
    with pytest.raises(CloudInitError, match="cloud_init.network_config must be a dict or a string"):
        seed_texts(None, None, 2)


def test_render_seed_refuses_what_is_not_text():
    with pytest.raises(CloudInitError, match="meta-data must be text .str., not dict"):
        render_seed("", {"instance-id": "x"})
    with pytest.raises(CloudInitError, match="user-data must be text .str., not NoneType"):
        render_seed(None, "")
    with pytest.raises(CloudInitError, match="user-data is not valid Unicode text at character 3"):
        render_seed("abc\ud800", "")
