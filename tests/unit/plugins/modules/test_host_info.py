"""kvmops.virt.host_info on libvirt's test driver: facts present, documented, and counted right.

A private test node (``test:///path/node.xml``) gives a host whose every figure we wrote
ourselves; the shared ``test:///default`` is checked against libvirt read independently.
CPU use cannot be measured here (the test driver's counters never move): the lab's
integration test does that.
"""

import time
import uuid
from contextlib import contextmanager

import libvirt
import pytest
import yaml

from ansible_collections.kvmops.virt.plugins.module_utils.safe_xml import parse_xml
from ansible_collections.kvmops.virt.plugins.module_utils.sizes import libvirt_size_bytes
from ansible_collections.kvmops.virt.plugins.modules import host_info

DEFAULT = "test:///default"
MIB = 1024 ** 2
GIB = 1024 ** 3
IDENTITY_KEYS = {"hostname", "uri", "host_uuid", "driver", "arch", "libvirt_version", "hypervisor_version",
                 "virtualization", "gathered"}

# 2 NUMA nodes of 1 socket x 4 cores x 2 threads, 16 GiB; one guest running (2 of 4 vCPUs, 768 of 1024 MiB),
# one shut off (3 vCPUs, 2 GiB); an isolated network and a dir pool.
NODE_XML = """<node>
  <cpu>
    <mhz>3000</mhz><model>x86_64</model>
    <nodes>2</nodes><sockets>1</sockets><cores>4</cores><threads>2</threads><active>16</active>
  </cpu>
  <memory>16777216</memory>
  <domain type="test" xmlns:test="http://libvirt.org/schemas/domain/test/1.0">
    <name>busy</name>
    <memory unit="MiB">1024</memory><currentMemory unit="MiB">768</currentMemory>
    <vcpu current="2">4</vcpu>
    <os><type>hvm</type></os>
  </domain>
  <domain type="test" xmlns:test="http://libvirt.org/schemas/domain/test/1.0">
    <name>off</name>
    <memory unit="GiB">2</memory>
    <vcpu>3</vcpu>
    <os><type>hvm</type></os>
    <test:runstate>5</test:runstate>
  </domain>
  <network><name>iso</name><bridge name="virbr9"/></network>
  <pool type="dir"><name>p1</name><target><path>/p1</path></target></pool>
</node>
"""


@pytest.fixture
def private_host(tmp_path):
    node = tmp_path / "node.xml"
    node.write_text(NODE_XML)
    return f"test://{node}"


def facts(run_module, uri, check=False, **options):
    result = run_module("host_info", dict(uri=uri, **options), check=check)
    assert not result.get("failed"), result
    assert result["changed"] is False
    return result["host"]


def documented_keys(contains):
    return {name: documented_keys(spec.get("contains", {})) for name, spec in contains.items()}


def returned_keys(value, shape):
    """The key tree of ``value`` shaped like ``shape``: dicts by key, lists by their elements."""
    if isinstance(value, list):
        trees = [returned_keys(item, shape) for item in value]
        assert all(tree == trees[0] for tree in trees), "list elements with different keys"
        return trees[0] if trees else shape
    if isinstance(value, dict):
        return {key: returned_keys(item, shape.get(key, {})) for key, item in value.items()}
    return {}


def test_every_returned_key_is_documented_and_every_documented_key_returned(run_module, private_host):
    result = facts(run_module, private_host, sample_seconds=0)
    documented = documented_keys(yaml.safe_load(host_info.RETURN)["host"]["contains"])
    assert returned_keys(result, documented) == documented
    assert result["storage_pools"] and result["networks"], "lists must not be empty for this check"


def test_private_host_facts_are_the_ones_it_was_defined_with(run_module, private_host):
    host = facts(run_module, private_host, sample_seconds=0)
    assert host["driver"] == "TEST" and host["uri"] == private_host
    assert host["virtualization"] == {"kvm": False, "domain_types": ["test"]}
    cpu = host["cpu"]
    assert (cpu["mhz"], cpu["numa_nodes"], cpu["sockets"], cpu["cores_per_socket"], cpu["threads_per_core"],
            cpu["logical_cpus"]) == (3000, 2, 2, 4, 2, 16)
    assert cpu["usage_percent"] is None and cpu["sample_seconds"] == 0
    assert host["memory"]["total"] == 16 * GIB and host["memory"]["source"] == "node_info"
    assert 0 <= host["memory"]["free"] <= host["memory"]["total"]
    assert host["guests"] == dict(defined=2, running=1, vcpus_running=2, vcpus_defined=5,
                                  memory_running=768 * MIB, memory_defined=768 * MIB + 2 * GIB)
    assert host["overcommit"] == dict(vcpus_running=pytest.approx(2 / 16, abs=0.001),
                                      vcpus_defined=pytest.approx(5 / 16, abs=0.001),
                                      memory_running=pytest.approx(0.75 / 16, abs=0.001),
                                      memory_defined=pytest.approx(2.75 / 16, abs=0.001))
    (pool,) = host["storage_pools"]
    assert (pool["name"], pool["type"], pool["active"], pool["autostart"]) == ("p1", "dir", True, False)
    assert pool["allocation"] + pool["available"] == pool["capacity"] > 0
    assert host["networks"] == [dict(name="iso", active=True, autostart=False, bridge="virbr9",
                                     forward_mode="isolated")]
    assert host["gathered"] == ["cpu", "guests", "memory", "networks", "storage"]


def _guest_xml(name, vcpus, current_vcpus, memory_mib, current_mib):
    return (f"<domain type='test'><name>{name}</name><memory unit='MiB'>{memory_mib}</memory>"
            f"<currentMemory unit='MiB'>{current_mib}</currentMemory>"
            f"<vcpu current='{current_vcpus}'>{vcpus}</vcpu><os><type>hvm</type></os></domain>")


@contextmanager
def three_guests_defined():
    """On test:///default: one running, one paused, one shut off; removed afterwards."""
    suffix = uuid.uuid4().hex[:8]
    conn = libvirt.open(DEFAULT)
    made = []
    try:
        running = conn.defineXML(_guest_xml(f"hi-run-{suffix}", 4, 2, 512, 384))
        made.append(running)
        running.create()
        paused = conn.defineXML(_guest_xml(f"hi-pause-{suffix}", 1, 1, 256, 256))
        made.append(paused)
        paused.create()
        paused.suspend()
        made.append(conn.defineXML(_guest_xml(f"hi-off-{suffix}", 3, 3, 1024, 1024)))
        yield conn
    finally:
        for dom in made:
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        conn.close()


def independent_totals(conn):
    """Counts and allocation read guest by guest from each one's XML (not how the module reads)."""
    totals = dict(defined=0, running=0, vcpus_running=0, vcpus_defined=0, memory_running=0, memory_defined=0)
    for dom in conn.listAllDomains():
        root = parse_xml(dom.XMLDesc(0))
        vcpu = root.find("vcpu")
        vcpus = int(vcpu.get("current", vcpu.text))
        memory = libvirt_size_bytes(root.find("currentMemory"))
        totals["defined"] += 1
        totals["vcpus_defined"] += vcpus
        totals["memory_defined"] += memory
        if dom.isActive():
            totals["running"] += 1
            totals["vcpus_running"] += vcpus
            totals["memory_running"] += memory
    return totals


def test_allocation_equals_what_libvirt_lists_guest_by_guest(run_module):
    with three_guests_defined() as conn:
        expected = independent_totals(conn)
        host = facts(run_module, DEFAULT, sample_seconds=0, gather=["guests", "cpu"])
    assert host["guests"] == expected
    logical_cpus = host["cpu"]["logical_cpus"]
    assert host["overcommit"]["vcpus_running"] == pytest.approx(expected["vcpus_running"] / logical_cpus, abs=0.001)
    assert host["overcommit"]["vcpus_defined"] == pytest.approx(expected["vcpus_defined"] / logical_cpus, abs=0.001)


def test_running_paused_and_shut_off_guests_add_exactly_what_they_were_given(run_module):
    before = facts(run_module, DEFAULT, sample_seconds=0, gather=["guests"])["guests"]
    with three_guests_defined():
        after = facts(run_module, DEFAULT, sample_seconds=0, gather=["guests"])["guests"]
    # running (2 of 4 vCPUs, 384 MiB) and paused (1 vCPU, 256 MiB) hold resources;
    # shut off (3 vCPUs, 1 GiB) only counts as defined
    assert {key: after[key] - before[key] for key in after} == dict(
        defined=3, running=2, vcpus_running=3, vcpus_defined=6,
        memory_running=(384 + 256) * MIB, memory_defined=(384 + 256 + 1024) * MIB)
    assert facts(run_module, DEFAULT, sample_seconds=0, gather=["guests"])["guests"] == before


def test_sample_seconds_zero_skips_the_sampling_window(run_module, private_host):
    started = time.monotonic()
    quick = facts(run_module, private_host, sample_seconds=0, gather=["cpu"])
    quick_seconds = time.monotonic() - started
    started = time.monotonic()
    sampled = facts(run_module, private_host, sample_seconds=1.0, gather=["cpu"])
    sampled_seconds = time.monotonic() - started
    assert quick["cpu"]["usage_percent"] is None and quick["cpu"]["sample_seconds"] == 0
    assert quick_seconds < 0.5
    assert sampled["cpu"]["sample_seconds"] == 1.0 and sampled_seconds >= 1.0


@pytest.mark.parametrize("gather, sections", [
    ([], set()),
    (["memory"], {"memory"}),
    (["guests"], {"guests", "overcommit"}),
    (["storage", "networks"], {"storage_pools", "networks"}),
    (["cpu", "all"], {"cpu", "memory", "guests", "overcommit", "storage_pools", "networks"}),
])
def test_gather_returns_the_identity_and_only_the_groups_asked_for(run_module, private_host, gather, sections):
    host = facts(run_module, private_host, sample_seconds=0, gather=gather)
    assert set(host) == IDENTITY_KEYS | sections


def test_check_mode_returns_the_same_facts(run_module, private_host):
    assert facts(run_module, private_host, check=True, sample_seconds=0) == facts(run_module, private_host,
                                                                                  sample_seconds=0)


@pytest.mark.parametrize("options, message", [
    (dict(sample_seconds=-1), "sample_seconds must be between 0 and 300 seconds (0: do not sample), got -1.0"),
    (dict(sample_seconds=301), "sample_seconds must be between 0 and 300 seconds (0: do not sample), got 301.0"),
    (dict(sample_seconds="nan"), "sample_seconds must be between 0 and 300 seconds"),
    (dict(sample_seconds="soon"), "sample_seconds"),
    (dict(gather=["disks"]), "gather must be one or more of: all, cpu, memory, guests, storage, networks. "
                             "Got no match for: disks"),
    (dict(gather="cpu,bogus"), "Got no match for: bogus"),
    (dict(colour="blue"), "Unsupported parameters"),
])
def test_bad_options_fail_clearly_before_connecting(run_module, closed_port, options, message):
    # an address nobody listens on: a connection attempt would fail with another message
    result = run_module("host_info", dict(uri=f"qemu+tcp://127.0.0.1:{closed_port}/system", **options))
    assert result["failed"] is True
    assert message in result["msg"]
    assert "connection" not in result["msg"]


def test_unreachable_hypervisor_fails_naming_the_uri(run_module, closed_port):
    uri = f"qemu+tcp://127.0.0.1:{closed_port}/system"
    result = run_module("host_info", dict(uri=uri, connect_timeout=5, sample_seconds=0))
    assert result["failed"] is True
    assert result["msg"].startswith(f"Could not open a connection on {uri}: ")
    assert result["uri"] == uri


def test_pools_and_networks_say_whether_they_are_active_and_autostarted(run_module):
    suffix = uuid.uuid4().hex[:8]
    conn = libvirt.open(DEFAULT)
    made = []
    try:
        made.append(conn.storagePoolDefineXML(f"<pool type='dir'><name>hi-pool-{suffix}</name>"
                                              f"<target><path>/hi-pool-{suffix}</path></target></pool>"))
        network = conn.networkDefineXML(f"<network><name>hi-net-{suffix}</name><forward mode='route'/>"
                                        f"<bridge name='hi{suffix}'/><ip address='10.99.0.1' prefix='24'/></network>")
        made.append(network)
        network.setAutostart(1)
        host = facts(run_module, DEFAULT, sample_seconds=0, gather=["storage", "networks"])
    finally:
        for thing in made:
            thing.undefine()
        conn.close()
    pools = {summary["name"]: summary for summary in host["storage_pools"]}
    assert (pools[f"hi-pool-{suffix}"]["active"], pools[f"hi-pool-{suffix}"]["autostart"]) == (False, False)
    assert (pools["default-pool"]["type"], pools["default-pool"]["active"]) == ("dir", True)
    assert pools["default-pool"]["capacity"] == conn_pool_capacity("default-pool")
    networks = {summary["name"]: summary for summary in host["networks"]}
    assert networks[f"hi-net-{suffix}"] == dict(name=f"hi-net-{suffix}", active=False, autostart=True,
                                                bridge=f"hi{suffix}", forward_mode="route")
    assert (networks["default"]["forward_mode"], networks["default"]["bridge"]) == ("nat", "virbr0")
    assert [summary["name"] for summary in host["storage_pools"]] == sorted(pools)


def conn_pool_capacity(name):
    """The pool's capacity from virStoragePoolGetInfo, not the XML the module reads."""
    conn = libvirt.open(DEFAULT)
    try:
        return conn.storagePoolLookupByName(name).info()[1]
    finally:
        conn.close()
