"""kvmops.virt.network on libvirt's test driver: define, start, DHCP updates, stop, remove.

What the test driver can and cannot show (libvirt 9.0):
- ``virNetworkUpdate`` works for DHCP hosts and ranges, live and persistent, except that
  ranges cannot be modified (real libvirt refuses that too: only add and delete).
- It refuses ``VIR_NETWORK_XML_INACTIVE`` and silently drops a redefinition made while the
  network runs, so a change needing a restart can be seen on its first run only; the second
  run and ``restart: if_needed`` are proven on the real lab (tests/integration/test_network.py).
- It creates no bridge, runs no dnsmasq and no firewall: NAT is tested here as the XML the
  module writes and libvirt accepts, never on the lab (it would add iptables rules).
- It assigns no bridge name, so every nat/isolated network here names its bridge.
"""

from xml.etree import ElementTree

import libvirt
import pytest

URI = "test:///default"
LIVE_AND_CONFIG = "(live and persistent)"


@pytest.fixture(name="net_name")
def net_name_fixture(driver, request):
    name = "ut-" + request.node.name.replace("_", "-")[5:45].strip("-")
    remove_network(driver, name)
    yield name
    remove_network(driver, name)


@pytest.fixture(name="host_bridge")
def host_bridge_fixture(driver):
    """Host bridges the test driver's interface driver knows, as a real host's would."""
    made = []

    def make(name):
        made.append(driver.interfaceDefineXML(
            f"<interface type='bridge' name='{name}'><start mode='none'/><bridge stp='off'/></interface>"))
        return name

    yield make
    for interface in made:
        interface.undefine()


def remove_network(driver, name):
    network = find(driver, name)
    if network is None:
        return
    if network.isActive():
        network.destroy()
    if find(driver, name) is not None and network.isPersistent():
        network.undefine()


def find(driver, name):
    try:
        return driver.networkLookupByName(name)
    except libvirt.libvirtError:
        return None


def xml_of(driver, name):
    return driver.networkLookupByName(name).XMLDesc(0)


def net_args(name, **options):
    return dict(uri=URI, name=name, **options)


def lab_net(name, bridge, **options):
    """An isolated network with DHCP, the common case."""
    return net_args(name, mode="isolated", bridge=bridge, ipv4="10.88.0.1/24",
                    dhcp=dict(range=dict(start="10.88.0.100", end="10.88.0.199"),
                              hosts=[dict(mac="52:54:00:88:00:01", name="db1", ip="10.88.0.11")]),
                    **options)


def converge(run_module, args):
    """Check mode, real run, second run; returns the real run's result after asserting the contract."""
    predicted = run_module("network", args, check=True)
    assert predicted.get("failed") is not True, predicted
    done = run_module("network", args)
    assert done.get("failed") is not True, done
    assert done["changed"] is True and predicted["changed"] is True
    assert predicted["diff"] == done["diff"]
    assert predicted["actions"] == done["actions"]
    assert predicted["restart_required"] == done["restart_required"]
    again = run_module("network", args)
    assert again["changed"] is False, again
    assert again["actions"] == []
    assert again["diff"]["before"] == again["diff"]["after"] == done["diff"]["after"]
    return done


# ---------------------------------------------------------------- define, start, idempotence


def test_isolated_network_with_dhcp_is_defined_and_started(run_module, driver, net_name):
    args = lab_net(net_name, "utbr-iso", domain="lab.example.com", mtu=9000, autostart=True)
    predicted = run_module("network", args, check=True)
    assert find(driver, net_name) is None  # check mode changed nothing
    assert predicted["network"]["uuid"] is None and predicted["network"]["active"] is True

    done = converge(run_module, args)
    assert done["actions"] == ["define", "autostart on", "start"]
    dhcp = dict(ranges=[dict(start="10.88.0.100", end="10.88.0.199")],
                hosts=[dict(mac="52:54:00:88:00:01", name="db1", ip="10.88.0.11")])
    assert done["diff"] == dict(before={}, after=dict(
        name=net_name, mode="isolated", bridge="utbr-iso", forward_dev=None, ipv4="10.88.0.1/24",
        domain="lab.example.com", mtu=9000, dhcp=dhcp, active=True, autostart=True, restart_pending=False))
    network = driver.networkLookupByName(net_name)
    assert network.isActive() and network.isPersistent() and network.autostart()
    facts = done["network"]
    assert facts["uuid"] == network.UUIDString()
    assert facts["dhcp"] == dhcp and facts["persistent"] is True and facts["mode"] == "isolated"
    xml = network.XMLDesc(0)
    assert "<forward" not in xml  # isolated: no forward element at all
    assert "<ip address='10.88.0.1' prefix='24'>" in xml
    assert "<host mac='52:54:00:88:00:01' name='db1' ip='10.88.0.11'/>" in xml
    assert "<domain name='lab.example.com'/>" in xml and "<mtu size='9000'/>" in xml


def test_new_network_defaults_to_isolated_and_inactive_when_asked(run_module, driver, net_name):
    done = converge(run_module, net_args(net_name, bridge="utbr-def", active=False))
    assert done["actions"] == ["define"]
    assert done["network"]["mode"] == "isolated" and done["network"]["ipv4"] is None
    assert done["network"]["active"] is False and done["network"]["autostart"] is False
    assert not driver.networkLookupByName(net_name).isActive()


def test_nat_network_xml_names_the_forward_device(run_module, driver, net_name):
    """NAT only as XML here: on a real host libvirt would add iptables rules for it."""
    args = net_args(net_name, mode="nat", bridge="utbr-nat", forward_dev="eth0", ipv4="10.89.0.1/24",
                    dhcp=dict(range=dict(start="10.89.0.10", end="10.89.0.20")), active=False)
    done = converge(run_module, args)
    forward = ElementTree.fromstring(xml_of(driver, net_name)).find("forward")
    assert forward.attrib == dict(mode="nat", dev="eth0")
    assert done["network"]["mode"] == "nat" and done["network"]["forward_dev"] == "eth0"

    converge(run_module, dict(args, forward_dev=""))  # the restriction removed
    forward = ElementTree.fromstring(xml_of(driver, net_name)).find("forward")
    assert forward.attrib == dict(mode="nat") and forward.find("interface") is None


def test_bridge_mode_network_uses_an_existing_host_bridge(run_module, driver, net_name, host_bridge):
    args = net_args(net_name, mode="bridge", bridge=host_bridge("utbr-host0"), autostart=True)
    done = converge(run_module, args)
    xml = xml_of(driver, net_name)
    assert "<forward mode='bridge'/>" in xml and "<bridge name='utbr-host0'/>" in xml
    assert done["network"]["ipv4"] is None and done["network"]["dhcp"] == dict(ranges=[], hosts=[])


def test_a_transient_network_becomes_persistent(run_module, driver, net_name):
    driver.networkCreateXML(f"<network><name>{net_name}</name><bridge name='utbr-tr'/></network>")
    assert not driver.networkLookupByName(net_name).isPersistent()
    done = run_module("network", net_args(net_name))
    assert done["changed"] is True and done["actions"] == ["define"]
    assert done["network"]["persistent"] is True and done["network"]["active"] is True
    assert run_module("network", net_args(net_name))["changed"] is False


# ---------------------------------------------------------------- DHCP on a running network


def test_static_host_is_added_live_and_persistently(run_module, driver, net_name):
    args = lab_net(net_name, "utbr-add")
    converge(run_module, args)
    args["dhcp"]["hosts"].append(dict(mac="52:54:00:88:00:02", name="web1", ip="10.88.0.12"))
    done = converge(run_module, args)
    assert done["actions"] == [f"add DHCP host ip=10.88.0.12 mac=52:54:00:88:00:02 name=web1 {LIVE_AND_CONFIG}"]
    assert done["restart_required"] is False and done["warnings"] == []
    assert done["diff"]["before"]["active"] is True  # no restart: the running network took it
    assert "<host mac='52:54:00:88:00:02' name='web1' ip='10.88.0.12'/>" in xml_of(driver, net_name)


def test_host_that_keeps_its_mac_is_modified_in_place(run_module, driver, net_name):
    args = lab_net(net_name, "utbr-mod")
    converge(run_module, args)
    args["dhcp"]["hosts"][0].update(ip="10.88.0.21", name="db-one")
    done = converge(run_module, args)
    assert done["actions"] == [f"modify DHCP host ip=10.88.0.21 mac=52:54:00:88:00:01 name=db-one {LIVE_AND_CONFIG}"]
    xml = xml_of(driver, net_name)
    assert "ip='10.88.0.21'" in xml and "10.88.0.11" not in xml


def test_two_hosts_swapping_addresses_never_collide(run_module, driver, net_name):
    """libvirt's modify picks the first entry matching the MAC, IP or name: a swap must not use it blindly."""
    args = lab_net(net_name, "utbr-swap")
    args["dhcp"]["hosts"].append(dict(mac="52:54:00:88:00:02", name="web1", ip="10.88.0.12"))
    converge(run_module, args)
    args["dhcp"]["hosts"][0]["ip"], args["dhcp"]["hosts"][1]["ip"] = "10.88.0.12", "10.88.0.11"
    done = converge(run_module, args)
    assert [action.split(" ip=")[0] for action in done["actions"]] == [
        "delete DHCP host", "modify DHCP host", "add DHCP host"]
    assert done["network"]["dhcp"]["hosts"] == [
        dict(mac="52:54:00:88:00:02", name="web1", ip="10.88.0.11"),
        dict(mac="52:54:00:88:00:01", name="db1", ip="10.88.0.12")]


def test_host_left_out_is_deleted_and_upper_case_mac_matches(run_module, driver, net_name):
    args = lab_net(net_name, "utbr-del")
    converge(run_module, args)
    again = run_module("network", dict(args, dhcp=dict(args["dhcp"], hosts=[
        dict(mac="52:54:00:88:00:01".upper(), name="db1", ip="10.88.0.11")])))
    assert again["changed"] is False  # libvirt stores MACs in lower case; so does the comparison
    args["dhcp"]["hosts"] = []
    done = converge(run_module, args)
    assert done["actions"] == [f"delete DHCP host ip=10.88.0.11 mac=52:54:00:88:00:01 name=db1 {LIVE_AND_CONFIG}"]
    assert "<host " not in xml_of(driver, net_name)


def test_range_is_replaced_by_delete_and_add(run_module, driver, net_name):
    args = lab_net(net_name, "utbr-rng")
    converge(run_module, args)
    args["dhcp"]["range"] = dict(start="10.88.0.150", end="10.88.0.250")
    done = converge(run_module, args)
    assert done["actions"] == [f"delete DHCP range end=10.88.0.199 start=10.88.0.100 {LIVE_AND_CONFIG}",
                               f"add DHCP range end=10.88.0.250 start=10.88.0.150 {LIVE_AND_CONFIG}"]
    assert "<range start='10.88.0.150' end='10.88.0.250'/>" in xml_of(driver, net_name)


def test_empty_dhcp_removes_dhcp_and_left_out_dhcp_keeps_it(run_module, driver, net_name):
    args = lab_net(net_name, "utbr-nodhcp")
    converge(run_module, args)
    kept = run_module("network", net_args(net_name, autostart=True))
    assert kept["changed"] is True and kept["actions"] == ["autostart on"]
    assert kept["network"]["dhcp"]["hosts"]  # dhcp left out: untouched
    done = converge(run_module, dict(args, dhcp={}))
    assert len(done["actions"]) == 2 and done["network"]["dhcp"] == dict(ranges=[], hosts=[])
    assert "<dhcp>" not in xml_of(driver, net_name)


# ---------------------------------------------------------------- changes needing a restart


def test_address_change_of_a_running_network_requires_a_restart(run_module, driver, net_name):
    args = lab_net(net_name, "utbr-rst")
    converge(run_module, args)
    moved = dict(args, ipv4="10.88.0.2/24")
    predicted = run_module("network", moved, check=True)
    done = run_module("network", moved)
    assert done["changed"] is True and done["actions"] == ["define"]
    assert done["restart_required"] is True and predicted["restart_required"] is True
    assert predicted["diff"] == done["diff"]
    assert done["diff"]["before"]["ipv4"] == "10.88.0.1/24" and done["diff"]["after"]["ipv4"] == "10.88.0.2/24"
    assert done["diff"]["after"]["restart_pending"] is True
    assert done["warnings"] == [f"network {net_name} runs with an older definition (ipv4); it takes effect when "
                                "the network restarts (restart: if_needed), which disconnects its guests"]
    assert driver.networkLookupByName(net_name).isActive()  # never stopped without being asked
    # the test driver drops the redefinition (see the module docstring); the lab proves the rest


def test_restart_if_needed_stops_and_starts_with_a_warning(run_module, driver, net_name):
    args = lab_net(net_name, "utbr-rst2")
    converge(run_module, args)
    done = run_module("network", dict(args, ipv4="10.88.0.2/24", restart="if_needed"))
    assert done["actions"] == ["define", "stop for restart", "start"]
    assert done["restarted"] is True and done["restart_required"] is False
    assert "lost connectivity" in done["warnings"][0]
    assert driver.networkLookupByName(net_name).isActive()


def test_changes_to_a_stopped_network_are_just_written(run_module, driver, net_name):
    args = lab_net(net_name, "utbr-off", active=False)
    converge(run_module, args)
    done = converge(run_module, dict(args, ipv4="10.88.1.1/24", dhcp=dict(
        range=dict(start="10.88.1.100", end="10.88.1.199"), hosts=[dict(mac="52:54:00:88:00:01", ip="10.88.1.11")])))
    assert done["actions"] == ["define"] and done["restart_required"] is False
    assert "10.88.1.1" in xml_of(driver, net_name)


def test_dhcp_change_of_a_stopped_network_updates_the_persistent_definition(run_module, driver, net_name):
    args = lab_net(net_name, "utbr-off2", active=False)
    converge(run_module, args)
    args["dhcp"]["hosts"].append(dict(name="printer", ip="10.88.0.30"))
    done = converge(run_module, args)
    assert done["actions"] == ["add DHCP host ip=10.88.0.30 name=printer (persistent)"]


def test_stop_start_and_autostart(run_module, driver, net_name):
    args = lab_net(net_name, "utbr-pwr")
    converge(run_module, args)
    stopped = converge(run_module, dict(args, active=False))
    assert stopped["actions"] == ["stop"] and not driver.networkLookupByName(net_name).isActive()
    started = converge(run_module, dict(args, autostart=True))
    assert started["actions"] == ["autostart on", "start"]
    off = converge(run_module, dict(args, autostart=False))
    assert off["actions"] == ["autostart off"] and not driver.networkLookupByName(net_name).autostart()


def test_mode_change_to_bridge_drops_addresses(run_module, driver, net_name, host_bridge):
    converge(run_module, lab_net(net_name, "utbr-m2b", domain="lab.example.com", active=False))
    done = converge(run_module, net_args(net_name, mode="bridge", bridge=host_bridge("utbr-host1"), active=False))
    assert done["diff"]["after"]["ipv4"] is None and done["diff"]["after"]["domain"] is None
    assert done["diff"]["after"]["dhcp"] == dict(ranges=[], hosts=[])
    xml = xml_of(driver, net_name)
    assert "<ip" not in xml and "<domain" not in xml and "stp=" not in xml


def test_domain_and_mtu_are_removed_by_empty_values(run_module, driver, net_name):
    args = lab_net(net_name, "utbr-dm", domain="lab.example.com", mtu=1400, active=False)
    converge(run_module, args)
    done = converge(run_module, dict(args, domain="", mtu=0))
    assert done["network"]["domain"] is None and done["network"]["mtu"] is None
    xml = xml_of(driver, net_name)
    assert "<domain" not in xml and "<mtu" not in xml


def test_empty_bridge_is_the_same_as_leaving_it_out(run_module, driver, net_name):
    converge(run_module, lab_net(net_name, "utbr-keepname", active=False))
    again = run_module("network", net_args(net_name, bridge="", active=False))
    assert again["changed"] is False and again["network"]["bridge"] == "utbr-keepname"


def test_elements_the_module_does_not_manage_are_kept(run_module, driver, net_name):
    driver.networkDefineXML(f"""<network><name>{net_name}</name><bridge name='utbr-keep'/>
        <dns><host ip='10.88.0.5'><hostname>printer</hostname></host></dns>
        <ip address='10.88.0.1' prefix='24'><dhcp>
          <range start='10.88.0.100' end='10.88.0.199'><lease expiry='1' unit='hours'/></range>
          <host mac='52:54:00:88:00:01' name='db1' ip='10.88.0.11'><lease expiry='2' unit='hours'/></host>
        </dhcp></ip>
        <ip family='ipv6' address='fd00:88::1' prefix='64'/></network>""")
    args = lab_net(net_name, "utbr-keep", domain="lab.example.com", active=False)
    args["dhcp"]["hosts"].append(dict(mac="52:54:00:88:00:02", name="web1", ip="10.88.0.12"))
    done = converge(run_module, args)
    assert done["actions"] == ["define"]  # the domain changed too: one new definition, not updates
    xml = xml_of(driver, net_name)
    assert "<hostname>printer</hostname>" in xml and "fd00:88::1" in xml and "lab.example.com" in xml
    assert "<lease expiry='1' unit='hours'/>" in xml and "<lease expiry='2' unit='hours'/>" in xml
    assert "name='web1'" in xml


def test_absent_stops_and_undefines(run_module, driver, net_name):
    converge(run_module, lab_net(net_name, "utbr-abs"))
    args = net_args(net_name, state="absent")
    done = converge(run_module, args)
    assert done["actions"] == ["stop", "undefine"] and done["network"] is None
    assert done["diff"]["after"] == {} and done["diff"]["before"]["ipv4"] == "10.88.0.1/24"
    assert find(driver, net_name) is None


def test_default_network_of_the_test_driver_is_only_read(run_module, driver):
    before = xml_of(driver, "default")
    done = run_module("network", net_args("default"))
    assert done["changed"] is False
    assert done["network"]["mode"] == "nat" and done["network"]["ipv4"] == "192.168.122.1/24"  # netmask read as prefix
    assert xml_of(driver, "default") == before


# ---------------------------------------------------------------- errors, before any change


BAD_OPTIONS = [
    (dict(name="a/b"), "name: 'a/b' is not a usable network name"),
    (dict(ipv4="10.88.0.1"), "ipv4: '10.88.0.1' has no prefix"),
    (dict(ipv4="10.88.0.1/33"), "ipv4: '10.88.0.1/33' is not an address with a prefix"),
    (dict(ipv4="fd00::1/64"), "ipv4: 'fd00::1/64' is an IPv6 address"),
    (dict(ipv4="10.88.0.0/24"), "ipv4: 10.88.0.0/24 is the network address of 10.88.0.0/24; give the host's own "
                                "address in it, such as 10.88.0.1/24"),
    (dict(ipv4="10.88.0.255/24"), "ipv4: 10.88.0.255/24 is the broadcast address of 10.88.0.0/24"),
    (dict(ipv4="10.88.0.1/31"), "ipv4: 10.88.0.1/31 leaves no address for guests"),
    (dict(bridge="a-bridge-name-too-long"), "bridge: 'a-bridge-name-too-long' is not a usable interface name"),
    (dict(domain="bad_domain.example"), "domain: 'bad_domain.example' is not a DNS domain name"),
    (dict(mtu=20), "mtu: 20 is out of range; use 68 to 65535 bytes"),
    (dict(dhcp=dict(range=dict(start="10.88.0.200", end="10.88.0.100"))),
     "dhcp.range: start 10.88.0.200 is after end 10.88.0.100"),
    (dict(dhcp=dict(range=dict(start="10.88.0.x", end="10.88.0.100"))), "dhcp.range.start: '10.88.0.x' is not an IPv4"),
    (dict(dhcp=dict(hosts=[dict(mac="52:54:00:zz:00:01", ip="10.88.0.5")])),
     "dhcp.hosts[0].mac: '52:54:00:zz:00:01' is not a MAC address"),
    (dict(dhcp=dict(hosts=[dict(mac="01:00:5e:00:00:01", ip="10.88.0.5")])),
     "dhcp.hosts[0].mac: 01:00:5e:00:00:01 is a multicast address"),
    (dict(dhcp=dict(hosts=[dict(name="a.b", ip="10.88.0.5")])), "dhcp.hosts[0].name: 'a.b' is not a host name"),
    (dict(dhcp=dict(hosts=[dict(ip="10.88.0.5")])), "dhcp.hosts[0]: give mac or name (or both)"),
    (dict(dhcp=dict(hosts=[dict(name="a", ip="10.88.0.5"), dict(name="b", ip="10.88.0.5")])),
     "dhcp.hosts[1].ip: 10.88.0.5 is already used by dhcp.hosts[0]"),
    (dict(dhcp=dict(hosts=[dict(mac="52:54:00:00:00:01", ip="10.88.0.5"), dict(mac="52:54:00:00:00:01", ip="10.88.0.6")])),
     "dhcp.hosts[1].mac: 52:54:00:00:00:01 is already used by dhcp.hosts[0]"),
    (dict(dhcp=dict(hosts=[dict(name="a", ip="10.88.0.5"), dict(name="a", ip="10.88.0.6")])),
     "dhcp.hosts[1].name: a is already used by dhcp.hosts[0]"),
]

BAD_COMBINATIONS = [
    (dict(mode="isolated", dhcp=dict(range=dict(start="10.88.0.10", end="10.88.0.20"))),
     "dhcp: DHCP needs an address for the network; give ipv4"),
    (dict(mode="nat"), "ipv4: mode nat needs the host side's address"),
    (dict(mode="isolated", forward_dev="eth0"), "forward_dev: a network in mode isolated forwards nothing"),
    (dict(ipv4="10.88.0.1/24", dhcp=dict(range=dict(start="10.88.1.10", end="10.88.1.20"))),
     "dhcp.range.start: 10.88.1.10 is not in the network 10.88.0.0/24 of ipv4 10.88.0.1/24"),
    (dict(ipv4="10.88.0.1/24", dhcp=dict(range=dict(start="10.88.0.0", end="10.88.0.20"))),
     "dhcp.range.start: 10.88.0.0 is the network address of 10.88.0.0/24"),
    (dict(ipv4="10.88.0.1/24", dhcp=dict(range=dict(start="10.88.0.10", end="10.88.0.255"))),
     "dhcp.range.end: 10.88.0.255 is the broadcast address of 10.88.0.0/24"),
    (dict(ipv4="10.88.0.1/24", dhcp=dict(hosts=[dict(name="a", ip="10.88.7.5")])),
     "dhcp.hosts[0].ip: 10.88.7.5 is not in the network 10.88.0.0/24"),
    (dict(ipv4="10.88.0.1/24", dhcp=dict(hosts=[dict(name="a", ip="10.88.0.1")])),
     "dhcp.hosts[0].ip: 10.88.0.1 is the host's own address on the network"),
    (dict(mode="bridge"), "bridge: mode bridge needs the name of an existing host bridge"),
    (dict(mode="bridge", bridge="utbr-nosuch"),
     "bridge: the host bridge 'utbr-nosuch' does not exist on test:///default; create it first"),
    (dict(mode="bridge", bridge="utbr-nosuch", ipv4="10.88.0.1/24"), "ipv4: a network in mode bridge has no address"),
    (dict(mode="bridge", bridge="utbr-nosuch", mtu=9000), "mtu: a network in mode bridge has no MTU of its own"),
    (dict(mode="bridge", bridge="utbr-nosuch", domain="lab.example.com"),
     "domain: a network in mode bridge has no DNS domain"),
    (dict(mode="bridge", bridge="utbr-nosuch", dhcp=dict(hosts=[dict(name="a", ip="10.88.0.5")])),
     "dhcp: a network in mode bridge has no DHCP server of libvirt's"),
]


@pytest.mark.parametrize("options, message", BAD_OPTIONS + BAD_COMBINATIONS)
def test_bad_request_fails_before_anything_changes(run_module, driver, net_name, options, message):
    args = net_args(net_name) if options.get("mode") == "bridge" else net_args(net_name, bridge="utbr-bad")
    args.update(options)
    for check in (True, False):
        failed = run_module("network", args, check=check)
        assert failed.get("failed") is True, failed
        assert failed["msg"].startswith(message), failed["msg"]
    assert find(driver, net_name) is None


def test_ipv4_change_that_strands_the_kept_dhcp_hosts_says_so(run_module, driver, net_name):
    args = lab_net(net_name, "utbr-strand")
    converge(run_module, args)
    before = xml_of(driver, net_name)
    failed = run_module("network", net_args(net_name, ipv4="10.99.0.1/24"))
    assert failed["failed"] is True
    assert failed["msg"] == ("dhcp.range.start: 10.88.0.100 is not in the network 10.99.0.0/24 of ipv4 10.99.0.1/24 "
                             "(it is the network's current DHCP setting: give dhcp too when changing ipv4)")
    assert xml_of(driver, net_name) == before


def test_removing_the_address_of_a_network_with_dhcp_asks_for_dhcp_too(run_module, driver, net_name):
    converge(run_module, lab_net(net_name, "utbr-noip", active=False))
    failed = run_module("network", net_args(net_name, ipv4="", active=False))
    assert failed["msg"] == "dhcp: DHCP needs an address for the network; give ipv4, or dhcp: {} to remove DHCP"
    done = converge(run_module, net_args(net_name, ipv4="", dhcp={}, active=False))
    assert "<ip" not in xml_of(driver, net_name)
    assert done["network"]["ipv4"] is None


def test_mode_change_does_not_carry_a_libvirt_bridge_over_to_bridge_mode(run_module, driver, net_name):
    converge(run_module, lab_net(net_name, "utbr-carry", active=False))
    failed = run_module("network", net_args(net_name, mode="bridge"))
    assert failed["msg"] == ("bridge: mode bridge needs the name of an existing host bridge (the network's current "
                             "bridge is not carried over when the mode changes)")


def test_unreachable_hypervisor_fails_with_the_uri(run_module, closed_port):
    uri = f"qemu+tcp://127.0.0.1:{closed_port}/system"
    failed = run_module("network", dict(uri=uri, name="whatever", connect_timeout=5))
    assert failed["failed"] is True and failed["msg"].startswith(f"Could not open a connection on {uri}: ")
