"""The kvmops.virt.libvirt inventory plugin, run by ansible-inventory itself, on libvirt's test
driver with node files: several hypervisors, guests in every state, tags, clashing names."""

import json
import re
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from ansible_collections.kvmops.virt.plugins.module_utils.metadata import GuestMetadata
from inventory_output import plain

RUNNING, PAUSED, STOPPED = 1, 3, 5
TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"


def guest_xml(name, state=RUNNING, vcpus=1, memory_mib=512, tags=None, mac=None, guest_uuid=None):
    metadata = ""
    if tags:
        element = GuestMetadata(tags).libvirt_fragment().replace("<guest>", "<kvmops:guest xmlns:kvmops="
                                                                 "'https://github.com/kvmops/kvmops.virt/1'>")
        metadata = "<metadata>%s</metadata>" % element.replace("<tag ", "<kvmops:tag ").replace(
            "</tag>", "</kvmops:tag>").replace("</guest>", "</kvmops:guest>")
    nic = f"<interface type='network'><mac address='{mac}'/><source network='default'/></interface>" if mac else ""
    return (f"<domain type='test' xmlns:test='{TEST_NS}'><name>{name}</name>"
            f"<uuid>{guest_uuid or uuid.uuid4()}</uuid>{metadata}"
            f"<memory unit='MiB'>{memory_mib}</memory><vcpu>{vcpus}</vcpu><os><type>hvm</type></os>"
            f"<devices><disk type='file' device='disk'><source file='/images/{name}.qcow2'/>"
            f"<target dev='vda' bus='virtio'/></disk>{nic}</devices>"
            f"<test:runstate>{state}</test:runstate></domain>")


def node_file(directory, name, guests, cpus=8, memory_gib=16):
    path = directory / f"{name}.xml"
    path.write_text(f"<node><cpu><mhz>2000</mhz><model>i686</model><nodes>1</nodes><sockets>1</sockets>"
                    f"<cores>{cpus}</cores><threads>1</threads></cpu><memory>{memory_gib * 1024 * 1024}</memory>"
                    + "".join(guests) + "</node>")
    return f"test://{path}"


SAME_UUID = "22222222-2222-2222-2222-222222222222"


@pytest.fixture
def fleet(tmp_path):
    """Two hypervisors; 'moving' is mid-migration (the same UUID on both), 'dup' is two guests."""
    hv1 = node_file(tmp_path, "hv1", [
        guest_xml("web-1", tags={"role": "web", "env": "prod"}, mac="52:54:00:00:00:01", vcpus=2),
        guest_xml("web-2", tags={"role": "web", "env": "test"}, state=PAUSED),
        guest_xml("db-1", tags={"role": "db", "env": "prod", "migratable": False}, state=STOPPED, vcpus=4),
        guest_xml("moving", state=PAUSED, guest_uuid=SAME_UUID),
        guest_xml("dup"),
        guest_xml("evil", tags={"note": "{{ lookup('pipe', 'touch %s') }}" % (tmp_path / "pwned")}),
    ])
    hv2 = node_file(tmp_path, "hv2", [
        guest_xml("moving", guest_uuid=SAME_UUID),
        guest_xml("dup", state=STOPPED),
        guest_xml("batch-1", tags={"role": "batch"}, vcpus=8, memory_mib=2048),
    ], cpus=4)
    return tmp_path, {"hv1": hv1, "hv2": hv2}


def write_config(directory, hypervisors, **options):
    config = dict(plugin="kvmops.virt.libvirt",
                  hypervisors=[dict(name=name, uri=uri) for name, uri in hypervisors.items()], **options)
    path = directory / "fleet.kvmops.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def inventory(ansible_env, config, *args):
    command = [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(config), *(args or ["--list"])]
    done = subprocess.run(command, env=ansible_env, capture_output=True, text=True, timeout=120, check=False)
    return done


def listed(ansible_env, config):
    done = inventory(ansible_env, config)
    assert done.returncode == 0, done.stderr
    # ansible-core before 2.19 wraps warnings at 80 columns (and after hyphens): compare texts, not line breaks
    return plain(json.loads(done.stdout)), unwrapped(done.stderr)


def unwrapped(text):
    """Warnings as one line: ansible-core before 2.19 wraps them at 80 columns, also right
    after a hyphen (the controller's host name may have one)."""
    return re.sub(r"-\s+", "-", " ".join(text.split()))


def group(data, name):
    return sorted(data.get(name, {}).get("hosts", []))


def test_guests_and_hypervisors_with_groups_and_vars(ansible_env, fleet):
    directory, hypervisors = fleet
    data, warnings = listed(ansible_env, write_config(directory, hypervisors))
    assert group(data, "kvm_hypervisors") == ["hv1", "hv2"]
    assert group(data, "kvm_guests") == ["batch-1", "db-1", "dup@hv1", "dup@hv2", "evil", "moving", "web-1", "web-2"]
    assert "different guests share the host name(s) dup" in warnings
    assert group(data, "kvm_on_hv2") == ["batch-1", "dup@hv2", "moving"]  # where the migrating guest runs
    assert group(data, "kvm_state_running") == ["batch-1", "dup@hv1", "evil", "moving", "web-1"]
    assert group(data, "kvm_state_paused") == ["web-2"]
    assert group(data, "kvm_state_stopped") == ["db-1", "dup@hv2"]
    assert group(data, "kvm_tag_role_web") == ["web-1", "web-2"]
    assert group(data, "kvm_tag_migratable_False") == ["db-1"]
    web = data["_meta"]["hostvars"]["web-1"]
    assert web["kvm_vcpus"] == 2 and web["kvm_memory"] == 512 * 1024 * 1024 and web["kvm_state"] == "running"
    assert web["kvm_tags"] == {"role": "web", "env": "prod"} and web["kvm_hypervisor"] == "hv1"
    assert web["kvm_interfaces"][0]["mac"] == "52:54:00:00:00:01"
    assert web["kvm_disks"][0]["path"] == "/images/web-1.qcow2"
    hv2 = data["_meta"]["hostvars"]["hv2"]
    assert hv2["kvm_reachable"] is True and hv2["kvm_logical_cpus"] == 4
    assert hv2["kvm_guests_defined"] == 3 and hv2["kvm_guests_running"] == 2
    assert hv2["kvm_vcpus_allocated"] == 9  # batch-1 (8) and moving (1); dup is stopped


LEAN_GUEST_VARS = {"kvm_name", "kvm_uuid", "kvm_state", "kvm_vcpus", "kvm_memory", "kvm_hypervisor", "kvm_uri",
                   "kvm_tags", "kvm_disks", "kvm_interfaces"}
DETAIL_GUEST_VARS = {"kvm_max_vcpus", "kvm_max_memory", "kvm_virt_type", "kvm_arch", "kvm_machine"}


def test_guests_get_few_variables_unless_details_are_wanted(ansible_env, fleet):
    directory, hypervisors = fleet
    data, _warnings = listed(ansible_env, write_config(directory, hypervisors))
    web = data["_meta"]["hostvars"]["web-1"]
    assert set(web) == LEAN_GUEST_VARS  # the test driver has no CPU time, no DHCP leases
    assert web["kvm_uri"] == hypervisors["hv1"]
    assert web["kvm_disks"] == [{"target": "vda", "path": "/images/web-1.qcow2"}]
    assert web["kvm_interfaces"] == [{"mac": "52:54:00:00:00:01", "source": "default", "address": None}]
    hv1 = data["_meta"]["hostvars"]["hv1"]
    assert hv1["kvm_maintenance"] is False and hv1["kvm_maintenance_mark"] is None  # no secrets in the test driver
    assert group(data, "kvm_maintenance") == []

    detailed, _warnings = listed(ansible_env, write_config(directory, hypervisors, want_details=True))
    web = detailed["_meta"]["hostvars"]["web-1"]
    assert set(web) == LEAN_GUEST_VARS | DETAIL_GUEST_VARS
    assert web["kvm_max_vcpus"] == 2 and web["kvm_virt_type"] == "test"
    assert web["kvm_disks"] == [{"target": "vda", "path": "/images/web-1.qcow2", "device": "disk", "bus": "virtio",
                                 "format": None, "readonly": False}]
    assert web["kvm_interfaces"][0]["type"] == "network"


def test_guest_strings_are_never_templated(ansible_env, fleet, tmp_path):
    directory, hypervisors = fleet
    config = write_config(directory, hypervisors)
    playbook = tmp_path / "show.yml"
    playbook.write_text("- hosts: evil\n  gather_facts: false\n  tasks:\n"
                        "    - ansible.builtin.debug: {msg: 'note={{ kvm_tags.note }}'}\n")
    marker = directory / "pwned"  # what the hostile tag would create if it were templated
    done = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(config), "-c", "local",
                           str(playbook)], env=ansible_env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "note={{ lookup('pipe', 'touch %s') }}" % marker in done.stdout
    assert not marker.exists()


def test_unreachable_hypervisor_is_a_warning_and_strict_makes_it_an_error(ansible_env, fleet, closed_port):
    directory, hypervisors = fleet
    hypervisors = dict(hypervisors, down=f"qemu+tcp://127.0.0.1:{closed_port}/system")
    data, warnings = listed(ansible_env, write_config(directory, hypervisors, connect_timeout=3))
    assert "hypervisor down is unreachable, its guests are not listed" in warnings
    assert data["_meta"]["hostvars"]["down"]["kvm_reachable"] is False
    assert "web-1" in group(data, "kvm_guests")  # the rest of the fleet is there
    strict = inventory(ansible_env, write_config(directory, hypervisors, connect_timeout=3, strict=True))
    assert "hypervisor down is unreachable" in " ".join(strict.stderr.split()) and "web-1" not in strict.stdout


@pytest.mark.parametrize("query, expected", [
    ("[?state=='running' && tags.env=='prod']", ["web-1"]),
    ("[?hypervisor=='hv2']", ["batch-1", "dup", "moving"]),  # one dup left: no clash
    ("[?vcpus >= `4`]", ["batch-1", "db-1"]),
    ("[?tags.migratable == `false`]", ["db-1"]),
    ("[?virt_type == 'test' && max_vcpus == `8`]", ["batch-1"]),  # details are always there for queries
])
def test_query_selects_the_guests(ansible_env, fleet, query, expected):
    directory, hypervisors = fleet
    data, _warnings = listed(ansible_env, write_config(directory, hypervisors, query=query))
    assert group(data, "kvm_guests") == expected


def test_constructed_options_and_name_format(ansible_env, fleet):
    directory, hypervisors = fleet
    config = write_config(directory, hypervisors, guest_name_format="{hypervisor}-{name}",
                          keyed_groups=[dict(key="kvm_tags.env | default('none')", prefix="env")],
                          compose=dict(cores_per_guest="kvm_vcpus"), groups=dict(big="(kvm_vcpus | default(0)) >= 4"))
    data, _warnings = listed(ansible_env, config)
    assert group(data, "env_prod") == ["hv1-db-1", "hv1-web-1"]
    assert group(data, "big") == ["hv1-db-1", "hv2-batch-1"]
    assert data["_meta"]["hostvars"]["hv2-batch-1"]["cores_per_guest"] == 8


def test_cache_answers_without_asking_the_hypervisors(ansible_env, fleet, tmp_path):
    directory, hypervisors = fleet
    cache = dict(cache=True, cache_plugin="ansible.builtin.jsonfile", cache_connection=str(tmp_path / "cache"),
                 cache_timeout=3600)
    config = write_config(directory, hypervisors, **cache)
    first, _warnings = listed(ansible_env, config)
    (directory / "hv2.xml").write_text("<node></node>")  # hv2 now has no guests at all
    second, _warnings = listed(ansible_env, config)
    assert group(second, "kvm_guests") == group(first, "kvm_guests")
    # ansible-playbook has --flush-cache on every core (ansible-inventory only from 2.19)
    playbook = tmp_path / "guests.yml"
    playbook.write_text("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                        "    - ansible.builtin.debug: {msg: \"guests={{ groups['kvm_guests'] | sort | join(',') }}\"}\n")
    done = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(config), "-c", "local",
                           "--flush-cache", str(playbook)],
                          env=ansible_env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "guests=" in done.stdout and "batch-1" not in done.stdout
    fourth, _warnings = listed(ansible_env, config)  # and the flushed run refreshed the cache
    assert "batch-1" not in group(fourth, "kvm_guests")


def test_hypervisors_from_an_inventory(ansible_env, fleet):
    directory, hypervisors = fleet
    (directory / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"kvm_hypervisors": {"hosts": {
        "hv1": {"libvirt_uri": hypervisors["hv1"]}, "hv2": {"libvirt_uri": hypervisors["hv2"]},
        "no-uri": {}}}}}}))
    config = directory / "from.kvmops.yml"
    config.write_text(yaml.safe_dump(dict(plugin="kvmops.virt.libvirt", hypervisors_from=dict(inventory="hosts.yml"))))
    data, _warnings = listed(ansible_env, config)
    assert group(data, "kvm_hypervisors") == ["hv1", "hv2"]
    assert "web-1" in group(data, "kvm_guests")


@pytest.mark.parametrize("options, message", [
    (dict(hypervisors=[dict(name="x")]), "hypervisors[0] needs a name and a uri"),
    (dict(hypervisors=[dict(name="x", uri="test:///default"), dict(name="x", uri="test:///default")]),
     "hypervisor names must be unique: x"),
    (dict(hypervisors=[dict(name="x", uri="test:///default")], query="[?"), "query '[?'"),
    (dict(hypervisors=[dict(name="x", uri="test:///default")], query="[].name"),
     "must return a list of guest records"),
    (dict(hypervisors=[], hypervisors_from=dict(inventory="missing.yml")), "missing.yml does not exist"),
])
def test_bad_configuration_says_what_is_wrong(ansible_env, tmp_path, options, message):
    config = tmp_path / "bad.kvmops.yml"
    config.write_text(yaml.safe_dump(dict(plugin="kvmops.virt.libvirt", **options)))
    done = inventory(ansible_env, config)
    assert message in " ".join(done.stderr.split()), done.stderr  # wrapped at 80 columns before 2.19


def test_other_file_names_are_not_claimed(ansible_env, tmp_path):
    config = tmp_path / "fleet.yml"
    config.write_text(yaml.safe_dump(dict(plugin="kvmops.virt.libvirt", hypervisors=[
        dict(name="x", uri="test:///default")])))
    done = inventory(ansible_env, config)
    assert "kvm_guests" not in done.stdout


def test_a_guest_never_takes_over_another_host(ansible_env, tmp_path):
    """Guests named like a hypervisor, localhost, a loopback or other address, the controller
    or a host of another inventory source are listed as <name>@<hypervisor>; those hosts
    keep their own variables and groups."""
    controller = socket.gethostname()
    hv1 = node_file(tmp_path, "hv1", [guest_xml(name) for name in
                                      ("hv2", "localhost", "127.0.0.1", "10.1.2.3", controller, "dbserver", "web-1")])
    hv2 = node_file(tmp_path, "hv2", [guest_xml("hv1@hv2")])  # the renamed form of nothing: kept
    config = write_config(tmp_path, {"hv1": hv1, "hv2": hv2})
    other_source = tmp_path / "hosts.ini"
    other_source.write_text("dbserver ansible_host=192.0.2.10\n")
    done = subprocess.run([str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(other_source), "-i",
                           str(config), "--list"], env=ansible_env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    data = plain(json.loads(done.stdout))
    warnings = unwrapped(done.stderr)
    hostvars = data["_meta"]["hostvars"]
    inventory_host = "a host of the inventory (a hypervisor, or from another source)"
    for name, reason in (("hv2", inventory_host), ("localhost", "the controller"),
                         ("127.0.0.1", "an IP address"), ("10.1.2.3", "an IP address"),
                         (controller, "the controller"), ("dbserver", inventory_host)):
        assert f"guest '{name}' on hv1 is named like {reason}; it is listed as '{name}@hv1'" in warnings, warnings
        assert hostvars[f"{name}@hv1"]["kvm_name"] == name
        assert f"{name}@hv1" in group(data, "kvm_guests")
    assert "hv2" not in group(data, "kvm_guests") and "hv2" in group(data, "kvm_hypervisors")
    assert hostvars["hv2"]["kvm_uri"] == hv2 and "kvm_state" not in hostvars["hv2"]
    assert hostvars["dbserver"] == {"ansible_host": "192.0.2.10"}
    assert not {"localhost", "127.0.0.1", "10.1.2.3", controller} & set(hostvars)
    assert "web-1" in group(data, "kvm_guests") and "hv1@hv2" in group(data, "kvm_guests")


def test_a_guest_named_like_a_renamed_one_is_renamed_in_turn(ansible_env, tmp_path):
    hv1 = node_file(tmp_path, "hv1", [guest_xml("hv2")])  # first by name: becomes hv2@hv1
    hv2 = node_file(tmp_path, "hv2", [guest_xml("hv2@hv1")])
    data, warnings = listed(ansible_env, write_config(tmp_path, {"hv1": hv1, "hv2": hv2}))
    assert data["_meta"]["hostvars"]["hv2@hv1"]["kvm_hypervisor"] == "hv1"
    assert data["_meta"]["hostvars"]["hv2@hv1@hv2"]["kvm_name"] == "hv2@hv1"
    assert "guest 'hv2@hv1' on hv2 is named like a host of the inventory" in warnings
    assert group(data, "kvm_guests") == ["hv2@hv1", "hv2@hv1@hv2"]
