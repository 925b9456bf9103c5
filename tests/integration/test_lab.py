"""The lab itself: real, separate hypervisors that behave like a fleet."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ansible_collections.kvmops.virt.plugins.module_utils.connection import LibvirtConnection, LibvirtOperationError
from lab import LabError
from lab.hosts import LIBVIRTD_PORT, LabHost
from lab.layout import HostSpec, LabLayout

PLAYBOOKS = Path(__file__).parent / "playbooks"


def test_up_again_is_harmless(lab):
    before = {host.spec.name: host.pid() for host in lab.running_hosts()}
    lab.up(len(before), log=lambda line: None)
    after = {host.spec.name: host.pid() for host in lab.running_hosts()}
    assert before == after and len(after) >= 3


def test_inventory_file_describes_the_running_hypervisors(lab):
    inventory = yaml.safe_load(lab.layout.inventory_path.read_text())
    hosts = inventory["all"]["children"]["kvm_hypervisors"]["hosts"]
    assert sorted(hosts) == sorted(host.spec.name for host in lab.running_hosts())
    for name, variables in hosts.items():
        assert variables["libvirt_uri"] == lab.host(name).spec.uri
    # playbooks log guest consoles into this directory; QEMU does not create it
    group_vars = inventory["all"]["children"]["kvm_hypervisors"]["vars"]
    assert Path(group_vars["kvm_lab_guest_logs"]).is_dir()


def test_every_host_is_a_separate_hypervisor(lab):
    seen = set()
    for host in lab.running_hosts():
        with LibvirtConnection(host.spec.uri, connect_timeout=5) as conn:
            capabilities = conn.handle.getCapabilities()
            assert f"<uuid>{host.spec.host_uuid}</uuid>" in capabilities
            seen.add(host.spec.host_uuid)
    assert len(seen) == len(lab.running_hosts())


def test_playbook_pings_each_hypervisor_from_the_lab_inventory(lab, ansible_env):
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(lab.layout.inventory_path),
         str(PLAYBOOKS / "ping_lab.yml")],
        env=ansible_env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    for host in lab.running_hosts():
        assert f"{host.spec.name} " in done.stdout and "failed=0" in done.stdout


def test_a_stopped_hypervisor_fails_fast_with_a_clear_message(lab, figures):
    host = lab.running_hosts()[-1]
    host.stop()
    try:
        started = time.monotonic()
        with pytest.raises(LibvirtOperationError) as caught:
            LibvirtConnection(host.spec.uri, connect_timeout=10).open()
        elapsed = time.monotonic() - started
        message = str(caught.value)
        figures(f"connect to stopped lab host {host.spec.name}", f"failed after {elapsed * 1000:.0f} ms")
        assert elapsed < 3
        assert message.startswith(f"Could not open a connection on {host.spec.uri}: ")
        assert "Connection refused" in message
    finally:
        host.start()
    with LibvirtConnection(host.spec.uri, connect_timeout=10) as conn:
        assert conn.handle.getHostname()


def test_a_taken_address_is_reported_with_its_holder(tmp_path):
    spec = HostSpec(9)  # not one the suite runs
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind((spec.address, LIBVIRTD_PORT))
    squatter.listen(1)
    try:
        with pytest.raises(LabError) as caught:
            LabHost(spec, LabLayout(tmp_path)).start()
    finally:
        squatter.close()
    message = str(caught.value)
    assert message.startswith(f"kvm9: {spec.address}:{LIBVIRTD_PORT} is taken by pid {os.getpid()}: ")
    assert "pytest" in message
