"""networks.py helpers: DHCP update planning, and undo when a libvirt call fails half-way
(real failures of libvirt's test driver, provoked by a concurrent change or a bad call)."""

import libvirt
import pytest

from ansible_collections.kvmops.virt.plugins.module_utils.connection import LibvirtConnection, LibvirtOperationError
from ansible_collections.kvmops.virt.plugins.module_utils.networks import (
    Step,
    dhcp_operations,
    merge_operations,
    parse_ipv4,
    parse_request,
    plan_network,
    read_network,
)

URI = "test:///default"
HOST_A = dict(mac="52:54:00:77:00:01", name="a", ip="10.77.0.11")
HOST_B = dict(mac="52:54:00:77:00:02", name="b", ip="10.77.0.12")


@pytest.fixture(name="conn")
def conn_fixture():
    with LibvirtConnection(URI) as conn:
        yield conn


@pytest.fixture(name="net_name")
def net_name_fixture(conn, request):
    name = "ut-nu-" + request.node.name.replace("_", "-")[5:40].strip("-")
    yield name
    try:
        network = conn.handle.networkLookupByName(name)
    except libvirt.libvirtError:
        return
    if network.isActive():
        network.destroy()
    network.undefine()


def params(name, **options):
    base = dict(name=name, state="present", active=True, autostart=None, restart="never", mode=None, bridge=None,
                forward_dev=None, ipv4=None, dhcp=None, domain=None, mtu=None)
    base.update(options)
    return base


def describe(operations):
    return [(operation.describe().split(" ")[0], operation.element.get("ip") or operation.element.get("start"))
            for operation in operations]


def test_swapped_addresses_are_deleted_and_added_not_modified_blindly():
    current = dict(ranges=[], hosts=[HOST_A, HOST_B])
    desired = dict(ranges=[], hosts=[dict(HOST_A, ip=HOST_B["ip"]), dict(HOST_B, ip=HOST_A["ip"])])
    operations = merge_operations(dhcp_operations(current, desired, 0), [])
    assert describe(operations) == [("delete", "10.77.0.11"), ("modify", "10.77.0.11"), ("add", "10.77.0.12")]


def test_host_without_mac_is_matched_by_name():
    current = dict(ranges=[], hosts=[dict(mac=None, name="printer", ip="10.77.0.30")])
    desired = dict(ranges=[], hosts=[dict(mac=None, name="printer", ip="10.77.0.31")])
    assert describe(dhcp_operations(current, desired, 0)) == [("modify", "10.77.0.31")]


def test_live_and_persistent_updates_share_a_call_only_when_identical():
    live_flag, config_flag = libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE, libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
    desired = dict(ranges=[], hosts=[HOST_A, HOST_B])
    config = dhcp_operations(dict(ranges=[], hosts=[HOST_A]), desired, 0)  # persistent has A already
    live = dhcp_operations(dict(ranges=[], hosts=[]), desired, 0)  # the running network has neither
    merged = merge_operations(config, live)
    assert [(operation.element.get("name"), operation.flags) for operation in merged] == [
        ("b", live_flag | config_flag), ("a", live_flag)]


def test_netmask_form_is_accepted_and_normalised():
    assert parse_ipv4("10.77.0.1/255.255.255.0").with_prefixlen == "10.77.0.1/24"
    assert parse_request(params("x", ipv4="10.77.0.1/255.255.0.0"))["definition"]["ipv4"] == "10.77.0.1/16"


def test_failed_start_undoes_the_dhcp_update_and_says_so(conn, net_name):
    """Someone starts the network between our look and our start: our start fails, our
    DHCP change is taken back, and the network is stopped again as we found it."""
    conn.handle.networkDefineXML(f"<network><name>{net_name}</name><bridge name='utbr-undo'/>"
                                 "<ip address='10.77.0.1' prefix='24'/></network>")
    request = parse_request(params(net_name, dhcp=dict(range=None, hosts=[HOST_A])))
    plan = plan_network(conn, request, read_network(conn, net_name))
    assert plan.actions == ["add DHCP host ip=10.77.0.11 mac=52:54:00:77:00:01 name=a (persistent)", "start"]
    conn.handle.networkLookupByName(net_name).create()  # the concurrent change
    with pytest.raises(LibvirtOperationError) as failure:
        plan.apply()
    assert str(failure.value).startswith(f"Could not start network {net_name} on {URI}: ")
    assert str(failure.value).endswith("; the changes made before it were undone "
                                       "(add DHCP host ip=10.77.0.11 mac=52:54:00:77:00:01 name=a (persistent))")
    network = conn.handle.networkLookupByName(net_name)
    assert "<host" not in network.XMLDesc(0) and not network.isActive()


def test_failure_after_define_removes_the_new_network(conn, net_name):
    request = parse_request(params(net_name, bridge="utbr-undo2", autostart=True))
    plan = plan_network(conn, request, None)
    assert plan.actions == ["define", "autostart on", "start"]
    plan.steps.insert(2, Step("probe", "look up network ut-no-such-network",
                              lambda: conn.handle.networkLookupByName("ut-no-such-network")))
    with pytest.raises(LibvirtOperationError) as failure:
        plan.apply()
    assert "Could not look up network ut-no-such-network" in str(failure.value)
    assert str(failure.value).endswith("; the changes made before it were undone (define, autostart on)")
    assert read_network(conn, net_name) is None


def test_failure_of_the_first_change_says_nothing_changed(conn, net_name):
    request = parse_request(params(net_name, bridge="utbr-undo3"))
    plan = plan_network(conn, request, None)
    conn.handle.networkDefineXML(f"<network><name>{net_name}</name><bridge name='utbr-other'/></network>")
    with pytest.raises(LibvirtOperationError) as failure:
        plan.apply()
    assert str(failure.value).startswith(f"Could not define network {net_name} on {URI}: ")
    assert str(failure.value).endswith("; nothing had been changed")
