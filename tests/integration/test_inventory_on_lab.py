"""The kvmops.virt.libvirt inventory on the real lab: real guests, a live migration between two
inventory runs, a hypervisor that is down and one that hangs, a playbook on its groups, a
maintenance mark, and CPU use sampled from a loaded guest."""

import subprocess
import sys
import time
from pathlib import Path

import libvirt
import pytest

from ansible_collections.kvmops.virt.plugins.module_utils.connection import LibvirtConnection
from ansible_collections.kvmops.virt.plugins.module_utils.maintenance import clear_mark, write_mark
from inventory_output import collection_stderr
from lab_inventory import hosts_of, inventory_list, write_config

LIVE_P2P = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
            | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)


@pytest.fixture
def running_guest(lab, guest_name):
    lab.create_guest(guest_name, "kvm2", load=5)
    return guest_name


def test_the_lab_and_a_migration_between_two_runs(lab, ansible_env, tmp_path, running_guest, figures):
    config = write_config(tmp_path, lab)
    data, warnings, seconds = inventory_list(ansible_env, config)
    figures("inventory of the lab (3 hypervisors), ansible-inventory --list", f"{seconds:.2f} s")
    assert "unreachable" not in warnings
    assert hosts_of(data, "kvm_hypervisors") == ["kvm1", "kvm2", "kvm3"]
    assert running_guest in hosts_of(data, "kvm_on_kvm2")
    assert running_guest in hosts_of(data, "kvm_state_running")
    guest = data["_meta"]["hostvars"][running_guest]
    assert guest["kvm_hypervisor"] == "kvm2" and guest["kvm_vcpus"] == 1
    assert guest["kvm_memory"] == 256 * 1024 * 1024
    kvm2 = data["_meta"]["hostvars"]["kvm2"]
    assert kvm2["kvm_reachable"] is True and kvm2["kvm_host_uuid"] == lab.host("kvm2").spec.host_uuid
    assert kvm2["kvm_guests_running"] >= 1 and kvm2["kvm_uri"] == lab.host("kvm2").spec.uri

    with LibvirtConnection(lab.host("kvm2").spec.uri) as conn:
        conn.handle.lookupByName(running_guest).migrateToURI3(lab.host("kvm3").spec.uri, {}, LIVE_P2P)
    moved, _warnings, _seconds = inventory_list(ansible_env, config)
    assert running_guest in hosts_of(moved, "kvm_on_kvm3")
    assert running_guest not in hosts_of(moved, "kvm_on_kvm2")
    assert moved["_meta"]["hostvars"][running_guest]["kvm_hypervisor"] == "kvm3"
    assert moved["_meta"]["hostvars"][running_guest]["kvm_uuid"] == guest["kvm_uuid"]


def test_a_hypervisor_that_is_down_or_hangs_costs_a_warning_and_its_timeout(
        lab, ansible_env, tmp_path, closed_port, silent_listener, running_guest, figures):
    config = write_config(tmp_path, lab, [("down", f"qemu+tcp://127.0.0.1:{closed_port}/system"),
                                          ("hung", f"qemu+tcp://127.0.0.1:{silent_listener}/system")],
                          connect_timeout=4)
    data, warnings, seconds = inventory_list(ansible_env, config)
    figures("inventory with one hypervisor down and one hung (timeout 4 s)", f"{seconds:.1f} s")
    assert "hypervisor down is unreachable" in warnings and "hypervisor hung is unreachable" in warnings
    assert data["_meta"]["hostvars"]["down"]["kvm_reachable"] is False
    assert data["_meta"]["hostvars"]["hung"]["kvm_reachable"] is False
    assert "no answer within 4 seconds" in data["_meta"]["hostvars"]["hung"]["kvm_error"]
    assert running_guest in hosts_of(data, "kvm_guests")  # the rest of the fleet is listed
    assert seconds < 4 + 6  # the hung one costs its timeout, not forever


def test_a_playbook_runs_on_the_running_guests_group(lab, ansible_env, tmp_path, running_guest):
    config = write_config(tmp_path, lab)
    graph = subprocess.run([str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(config), "--graph",
                            "kvm_state_running"], env=ansible_env, capture_output=True, text=True, timeout=300,
                           check=False)
    assert graph.returncode == 0 and f"|--{running_guest}" in graph.stdout, graph.stdout + graph.stderr
    playbook = tmp_path / "running.yml"
    playbook.write_text("- hosts: kvm_state_running\n  gather_facts: false\n  connection: local\n  tasks:\n"
                        "    - ansible.builtin.debug:\n"
                        "        msg: '{{ inventory_hostname }} runs on {{ kvm_hypervisor }}'\n")
    done = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(config), str(playbook),
                           "-e", f"ansible_python_interpreter={sys.executable}"],
                          env=ansible_env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{running_guest} runs on kvm2" in done.stdout


@pytest.fixture
def maintenance_on_kvm3(lab):
    with LibvirtConnection(lab.host("kvm3").spec.uri) as conn:
        mark = write_mark(conn.handle, reason="firmware update", by="test_inventory_on_lab")
    yield mark
    with LibvirtConnection(lab.host("kvm3").spec.uri) as conn:
        clear_mark(conn.handle)


def test_a_hypervisor_in_maintenance_is_marked_and_grouped(lab, ansible_env, tmp_path, maintenance_on_kvm3):
    config = write_config(tmp_path, lab)
    data, _warnings, _seconds = inventory_list(ansible_env, config)
    assert hosts_of(data, "kvm_maintenance") == ["kvm3"]
    kvm3 = data["_meta"]["hostvars"]["kvm3"]
    assert kvm3["kvm_maintenance"] is True
    assert kvm3["kvm_maintenance_mark"] == maintenance_on_kvm3  # since, reason, by; read over read-only
    assert data["_meta"]["hostvars"]["kvm1"]["kvm_maintenance"] is False

    with LibvirtConnection(lab.host("kvm3").spec.uri) as conn:
        assert clear_mark(conn.handle) is True
    cleared, _warnings, _seconds = inventory_list(ansible_env, config)
    assert hosts_of(cleared, "kvm_maintenance") == []
    assert cleared["_meta"]["hostvars"]["kvm3"]["kvm_maintenance_mark"] is None


@pytest.fixture
def agentless_guest(lab, guest_name):
    """A running guest without an agent, of this test's own, beside the one with an agent."""
    name = guest_name + "-plain"
    lab.remove_guest_if_defined(name)
    lab.create_guest(name, "kvm2")
    yield name
    lab.remove_guest_if_defined(name)


def test_cpu_use_is_sampled_and_a_real_guest_agent_answers(lab, ansible_env, tmp_path, guest_name, agentless_guest,
                                                           figures):
    lab.create_guest(guest_name, "kvm1", load=60, agent=True)
    time.sleep(3)  # the load settles
    config = write_config(tmp_path, lab, sample_seconds=2, want_agent_info=True)
    data, warnings, seconds = inventory_list(ansible_env, config)
    figures("inventory of the lab with sample_seconds=2 and want_agent_info", f"{seconds:.2f} s")
    guest = data["_meta"]["hostvars"][guest_name]
    assert 35 <= guest["kvm_cpu_percent"] <= 90, guest  # loadd keeps one vCPU about 60 % busy
    assert guest["kvm_cpu_cores"] == pytest.approx(guest["kvm_cpu_percent"] / 100, abs=0.01)
    assert guest["kvm_cpu_time"] > 0
    # the lab guest's agentd, through QEMU's virtio-serial channel and libvirt's agent client
    agent = guest["kvm_agent"]
    assert agent["hostname"] == guest_name and agent["os"]["id"] == "kvmops-lab"
    assert agent["os"]["kernel"].endswith("-cloud-amd64")
    loopback = next(nic for nic in agent["interfaces"] if nic["name"] == "lo")
    assert loopback["mac"] == "00:00:00:00:00:00" and "127.0.0.1" in loopback["addresses"]
    # every other lab guest has no agent (or is not running): asked nothing, no warning
    others = [name for name in hosts_of(data, "kvm_guests") if name != guest_name]
    assert agentless_guest in others and not any("kvm_agent" in data["_meta"]["hostvars"][name] for name in others)
    # nothing else on stderr (the lab's templates share a name on every host: that warning is due)
    assert [line for line in collection_stderr(warnings) if line.strip() and "share the host name" not in line] == []
    assert seconds < 2 + 8  # sampling runs on all hypervisors at once
