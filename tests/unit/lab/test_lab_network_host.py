"""The lab's private-network host (kvmnet<N>) and the firewall refusal of the kvm hosts: the pure parts."""

from pathlib import Path

import pytest

from lab import Lab, LabError
from lab.hosts import (FIREWALL_TOOLS, LabHost, NetworkLabHost, firewall_refusal, libvirtd_conf,
                       network_libvirtd_conf, network_qemu_conf)
from lab.layout import HostSpec, LabLayout, NetworkHostSpec, network_host_from_name


def test_network_host_is_reached_through_the_unix_socket_in_its_run_directory(tmp_path):
    spec = LabLayout(tmp_path).network_host_spec(1)
    assert spec.name == "kvmnet1"
    assert spec.socket_path == tmp_path.resolve() / "hosts" / "kvmnet1" / "run" / "libvirt-sock"
    assert spec.uri == f"qemu+unix:///system?socket={spec.socket_path}"
    assert network_host_from_name("kvmnet1", tmp_path.resolve()) == spec


def test_a_lab_dir_with_odd_characters_is_quoted_in_the_uri():
    spec = NetworkHostSpec(2, Path("/srv/my lab&co"))
    assert spec.uri == "qemu+unix:///system?socket=/srv/my%20lab%26co/hosts/kvmnet2/run/libvirt-sock"


@pytest.mark.parametrize("name", ["kvmnet", "kvmnet0", "kvm1", "kvmnetx", "net1", "kvmnet10"])
def test_bad_network_host_names_are_refused(tmp_path, name):
    with pytest.raises(ValueError):
        network_host_from_name(name, tmp_path)


def test_network_host_has_its_own_uuid_and_no_tcp_listener(tmp_path):
    spec = NetworkHostSpec(1, tmp_path)
    assert spec.host_uuid not in {HostSpec(index).host_uuid for index in range(1, 10)}
    conf = network_libvirtd_conf(spec)
    assert f'host_uuid = "{spec.host_uuid}"' in conf
    assert "listen_tcp = 0" in conf and "listen_addr" not in conf
    assert "migration" not in network_qemu_conf(spec)  # nothing can reach it to migrate
    assert "namespaces = [ ]" in network_qemu_conf(spec)  # how lab-down finds its QEMUs


def test_network_hosts_are_kept_apart_from_the_kvm_hosts(tmp_path):
    for name in ("kvm1", "kvm2", "kvmnet1", "kvmnet3", "other"):
        (tmp_path / "hosts" / name).mkdir(parents=True)
    layout = LabLayout(tmp_path)
    assert layout.known_hosts() == [HostSpec(1), HostSpec(2)]  # inventory, migrations, lab.hosts()
    assert [spec.name for spec in layout.known_network_hosts()] == ["kvmnet1", "kvmnet3"]
    lab = Lab(tmp_path)
    assert [host.spec.name for host in lab.hosts()] == ["kvm1", "kvm2"]
    assert all(isinstance(host, NetworkLabHost) for host in lab.network_hosts())
    assert lab.network_host("kvmnet3").spec == lab.network_host(3).spec
    assert lab.leftovers() == {}  # nothing runs: no namespace files


def test_kvm_hosts_launch_with_the_firewall_tools_refused(tmp_path):
    host = LabHost(HostSpec(4), LabLayout(tmp_path))
    command = host._launch_command()  # pylint: disable=protected-access
    assert command[:4] == ["unshare", "--mount", "--propagation", "private"]
    assert command[-len(FIREWALL_TOOLS) - 1:] == [str(host.firewall_refusal_file), *FIREWALL_TOOLS]
    assert "listen_tcp = 1" in libvirtd_conf(host.spec)
    script = firewall_refusal(host.spec)
    assert script.startswith("#!/bin/sh\n") and "kvm4 shares this machine's firewall" in script
    assert script.rstrip().endswith("exit 1")


def test_network_host_launches_in_new_network_and_mount_namespaces(tmp_path):
    host = Lab(tmp_path).network_host(1)
    command = host._launch_command()  # pylint: disable=protected-access
    assert command[:5] == ["unshare", "--net", "--mount", "--propagation", "private"]
    assert command[5:7] == ["sh", "-c"]
    assert "--listen" not in command[7] and "ip link set lo up" in command[7]
    assert host.NAMESPACES == ("mnt", "net")
    assert host.unrefused_firewall_tools() == []  # its firewall is its own


def test_a_lab_dir_too_deep_for_a_unix_socket_is_refused_before_anything_starts(tmp_path):
    deep = tmp_path / ("d" * 100)
    host = Lab(deep).network_host(1)
    with pytest.raises(LabError) as caught:
        host.start()
    assert str(caught.value).startswith(f"kvmnet1: the socket path {host.spec.socket_path} is longer than the 107 bytes")
    assert not host.dir.exists()  # refused before any file was written
