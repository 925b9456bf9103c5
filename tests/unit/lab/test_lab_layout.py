"""The lab's pure parts: host naming and addressing, daemon configs, guest XML, inventory."""

from xml.etree import ElementTree

import pytest

from lab.guests import LabError, guest_xml
from lab.hosts import libvirtd_conf, qemu_conf
from lab.inventory import inventory_document
from lab.layout import MAX_HOSTS, HostSpec, LabLayout, host_from_name


def test_hosts_are_named_and_addressed_by_index():
    spec = HostSpec(1)
    assert (spec.name, spec.address, spec.uri) == ("kvm1", "127.0.0.2", "qemu+tcp://127.0.0.2/system")
    assert host_from_name("kvm7") == HostSpec(7)


@pytest.mark.parametrize("name", ["kvm", "kvm0", "host1", "kvm1a", f"kvm{MAX_HOSTS + 1}"])
def test_bad_host_names_are_refused(name):
    with pytest.raises(ValueError):
        host_from_name(name)


def test_every_host_owns_distinct_uuid_address_and_migration_ports():
    specs = [HostSpec(i) for i in range(1, MAX_HOSTS + 1)]
    assert len({s.host_uuid for s in specs}) == MAX_HOSTS
    assert len({s.address for s in specs}) == MAX_HOSTS
    ports = [port for s in specs for port in range(s.migration_ports[0], s.migration_ports[1] + 1)]
    assert len(ports) == len(set(ports)) and max(ports) <= 65535
    assert all(s.address.startswith("127.0.0.") for s in specs)


def test_uuids_are_the_same_in_every_run_and_release():
    # a lab restarted by a newer checkout must keep its hosts' identities
    assert HostSpec(2).host_uuid == "b509268b-3ca1-59e5-b310-36ee99b52b69"


def test_daemon_configs_carry_the_hosts_own_identity():
    spec = HostSpec(3)
    assert f'host_uuid = "{spec.host_uuid}"' in libvirtd_conf(spec)
    assert f'listen_addr = "{spec.address}"' in libvirtd_conf(spec)
    conf = qemu_conf(spec)
    assert f"migration_port_min = {spec.migration_ports[0]}" in conf
    assert f'migration_address = "{spec.address}"' in conf
    assert "namespaces = [ ]" in conf  # how lab-down finds every QEMU it started


def test_guest_xml_boots_the_lab_image_with_its_load(tmp_path):
    layout = LabLayout(tmp_path)
    root = ElementTree.fromstring(guest_xml("web-1", layout, "/img/vmlinuz", "/img/initrd.gz",
                                            vcpus=2, memory_mib=384, load=40))
    assert root.get("type") == "qemu"
    assert root.findtext("name") == "web-1"
    assert root.findtext("vcpu") == "2" and root.find("vcpu").get("current") == "2"
    assert root.findtext("os/kernel") == "/img/vmlinuz"
    assert "kvmops.load=40" in root.findtext("os/cmdline")
    assert root.find("devices/serial/log").get("file") == str(layout.serial_log("web-1"))


def test_guest_xml_with_room_for_hot_plugged_vcpus(tmp_path):
    root = ElementTree.fromstring(guest_xml("db-1", LabLayout(tmp_path), "/k", "/i", vcpus=1, max_vcpus=4))
    assert (root.find("vcpu").get("current"), root.findtext("vcpu")) == ("1", "4")


@pytest.mark.parametrize("name", ["", "-lead", "has space", "semi;colon", "x" * 64, "<tag>"])
def test_guest_names_libvirt_or_shells_would_trip_on_are_refused(tmp_path, name):
    with pytest.raises(LabError):
        guest_xml(name, LabLayout(tmp_path), "/k", "/i")


@pytest.mark.parametrize("load", [-1, 101])
def test_load_outside_0_to_100_is_refused(tmp_path, load):
    with pytest.raises(LabError):
        guest_xml("g", LabLayout(tmp_path), "/k", "/i", load=load)


def test_inventory_lists_hypervisors_with_their_uri():
    document = inventory_document([HostSpec(1), HostSpec(2)])
    hosts = document["all"]["children"]["kvm_hypervisors"]["hosts"]
    assert list(hosts) == ["kvm1", "kvm2"]
    assert hosts["kvm2"]["libvirt_uri"] == "qemu+tcp://127.0.0.3/system"
    assert hosts["kvm2"]["ansible_connection"] == "local"
    assert list(document["all"]["children"]["controller"]["hosts"]) == ["localhost"]


def test_layout_honours_the_lab_dir_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("KVMOPS_LAB_DIR", str(tmp_path / "elsewhere"))
    assert LabLayout().root == tmp_path / "elsewhere"
    (tmp_path / "elsewhere" / "hosts" / "kvm2").mkdir(parents=True)
    (tmp_path / "elsewhere" / "hosts" / "notahost").mkdir()
    assert LabLayout().known_hosts() == [HostSpec(2)]
