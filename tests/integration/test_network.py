"""kvmops.virt.network on a real lab daemon (kvm1, libvirt 9.0), without any traffic.

What the test driver cannot show: libvirt's own validation of the XML the module writes,
``virNetworkUpdate`` on a real network driver, a persistent definition that differs from
the running one (restart_required, then restart: if_needed), and the undo of a define
when the start fails.

What this machine cannot show either: a *running* isolated or NAT network. libvirt 9.0
runs iptables for every such network it starts (even isolated ones: it adds INPUT/FORWARD
rules for the bridge), and this shared machine has no iptables and must keep its
firewall as it is. So the isolated network with DHCP here stays defined but stopped: its
DHCP updates go through virNetworkUpdate on the persistent definition only. The live
half (dnsmasq's hostsfile under the daemon's /var/lib/libvirt/dnsmasq) needs a hypervisor
whose firewall libvirt may change. Running networks are shown with mode bridge over host
bridges made here (no address, no dnsmasq, no firewall rules).
"""

import ipaddress
import os
import subprocess
import time
from xml.etree import ElementTree

import libvirt
import pytest

PREFIX = "it-net-"
SUBNET_CANDIDATES = [ipaddress.ip_network(f"10.213.{third}.0/24") for third in range(40, 60)]


def _quiet(_context, _error):
    """libvirt prints every error on stderr by default; the tests look at the module's."""


libvirt.registerErrorHandler(_quiet, None)


@pytest.fixture(scope="module", name="kvm1")
def kvm1_fixture(lab):
    return lab.host("kvm1")


@pytest.fixture(name="conn")
def conn_fixture(kvm1):
    conn = libvirt.open(kvm1.spec.uri)
    yield conn
    conn.close()


@pytest.fixture(name="net_name")
def net_name_fixture(conn, request):
    """A network name for one test, removed (stopped and undefined) afterwards whatever happened."""
    name = PREFIX + request.node.name.replace("_", "-")[5:35].strip("-")
    remove_network(conn, name)
    yield name
    remove_network(conn, name)
    assert find(conn, name) is None


@pytest.fixture(name="host_bridge")
def host_bridge_fixture():
    """Makes host bridges (ip link add NAME type bridge: down, no address, no ports); all
    are deleted afterwards, and the test fails if one is left behind."""
    made = []

    def make(tag):
        name = f"kvmops{os.getpid() % 0x10000:04x}{tag}"
        assert not link_exists(name), f"{name} exists already"
        subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True, capture_output=True, timeout=30)
        made.append(name)
        return name

    yield make
    for name in made:
        if link_exists(name):
            subprocess.run(["ip", "link", "del", name], check=True, capture_output=True, timeout=30)
    assert not [name for name in made if link_exists(name)]


@pytest.fixture(name="free_subnet")
def free_subnet_fixture(lab):
    """A /24 in 10.213.40-59.x that no address of this machine and no lab network uses."""
    used = [ipaddress.ip_interface(address).network for address in machine_ipv4_addresses()]
    with lab.connections() as conns:
        for conn in conns.values():
            for network in conn.listAllNetworks():
                for ip in ElementTree.fromstring(network.XMLDesc(0)).findall("ip"):
                    mask = ip.get("prefix") or ip.get("netmask") or "32"
                    used.append(ipaddress.ip_interface(f"{ip.get('address')}/{mask}").network)
    for candidate in SUBNET_CANDIDATES:
        if not any(candidate.overlaps(network) for network in used):
            return candidate
    pytest.fail("no free subnet among %s..%s" % (SUBNET_CANDIDATES[0], SUBNET_CANDIDATES[-1]))


def machine_ipv4_addresses():
    listed = subprocess.run(["ip", "-o", "-4", "addr", "show"], check=True, capture_output=True, text=True,
                            timeout=30).stdout
    return [line.split(" inet ")[1].split()[0] for line in listed.splitlines() if " inet " in line]


def link_exists(name):
    return subprocess.run(["ip", "link", "show", name], capture_output=True, timeout=30, check=False).returncode == 0


def find(conn, name):
    try:
        return conn.networkLookupByName(name)
    except libvirt.libvirtError:
        return None


def remove_network(conn, name):
    network = find(conn, name)
    if network is None:
        return
    if network.isActive():
        network.destroy()
    if network.isPersistent():
        network.undefine()


def persistent_xml(conn, name):
    return conn.networkLookupByName(name).XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)


def running_xml(conn, name):
    return conn.networkLookupByName(name).XMLDesc(0)


def converge(run_module, args):
    """Check mode, real run, second run; returns the real run's result after asserting the contract."""
    predicted = run_module("network", args, check=True)
    assert predicted.get("failed") is not True, predicted
    done = run_module("network", args)
    assert done.get("failed") is not True, done
    assert done["changed"] is True and predicted["changed"] is True
    assert predicted["diff"] == done["diff"] and predicted["actions"] == done["actions"]
    assert predicted["restart_required"] == done["restart_required"]
    again = run_module("network", args)
    assert again["changed"] is False and again["actions"] == [], again
    assert again["diff"]["before"] == again["diff"]["after"] == done["diff"]["after"]
    return done


def test_isolated_dhcp_network_is_defined_and_updated_by_the_real_network_driver(run_module, kvm1, conn, net_name,
                                                                                 free_subnet, figures):
    hosts = list(free_subnet.hosts())
    gateway, first, last = hosts[0], hosts[99], hosts[149]
    bridge = f"kvmops{os.getpid() % 0x10000:04x}i"  # libvirt would make it on start; never started here
    args = dict(uri=kvm1.spec.uri, name=net_name, mode="isolated", bridge=bridge, active=False,
                ipv4=f"{gateway}/{free_subnet.prefixlen}", domain="it.kvmops.test", mtu=1400,
                dhcp=dict(range=dict(start=str(first), end=str(last)),
                          hosts=[dict(mac="52:54:00:21:30:01", name="db1", ip=str(hosts[9]))]))
    started = time.monotonic()
    done = converge(run_module, args)
    figures("network: define isolated+DHCP, 3 runs (kvm1)", f"{(time.monotonic() - started) * 1000:.0f} ms")
    assert done["actions"] == ["define"]
    facts = done["network"]
    assert facts["uuid"] == conn.networkLookupByName(net_name).UUIDString()
    assert facts["ipv4"] == f"{gateway}/24" and facts["bridge"] == bridge and facts["active"] is False
    xml = persistent_xml(conn, net_name)
    assert f"<host mac='52:54:00:21:30:01' name='db1' ip='{hosts[9]}'/>" in xml
    assert "<domain name='it.kvmops.test'/>" in xml and "<mtu size='1400'/>" in xml
    assert "<mac address=" in xml  # libvirt's own bridge MAC, which later edits must keep
    bridge_mac = xml.split("<mac address='")[1].split("'")[0]

    # a static host added: virNetworkUpdate on the persistent definition of the real driver
    args["dhcp"]["hosts"].append(dict(mac="52:54:00:21:30:02", name="web1", ip=str(hosts[10])))
    started = time.monotonic()
    done = converge(run_module, args)
    figures("network: add a DHCP host, 3 runs (kvm1)", f"{(time.monotonic() - started) * 1000:.0f} ms")
    assert done["actions"] == [f"add DHCP host ip={hosts[10]} mac=52:54:00:21:30:02 name=web1 (persistent)"]
    assert f"<host mac='52:54:00:21:30:02' name='web1' ip='{hosts[10]}'/>" in persistent_xml(conn, net_name)

    # the two hosts swap addresses: delete, modify, add, in an order libvirt accepts
    args["dhcp"]["hosts"][0]["ip"], args["dhcp"]["hosts"][1]["ip"] = str(hosts[10]), str(hosts[9])
    done = converge(run_module, args)
    assert [action.split(" ip=")[0] for action in done["actions"]] == [
        "delete DHCP host", "modify DHCP host", "add DHCP host"]
    xml = persistent_xml(conn, net_name)
    assert f"mac='52:54:00:21:30:01' name='db1' ip='{hosts[10]}'" in xml
    assert f"mac='52:54:00:21:30:02' name='web1' ip='{hosts[9]}'" in xml

    # a new address for a stopped network: just a new definition, nothing to restart
    dhcp_range = dict(start=str(hosts[19]), end=str(hosts[29]))
    args.update(ipv4=f"{gateway}/25", dhcp=dict(range=dhcp_range, hosts=args["dhcp"]["hosts"]))
    done = converge(run_module, args)
    assert done["actions"] == ["define"] and done["restart_required"] is False
    xml = persistent_xml(conn, net_name)
    assert f"<ip address='{gateway}' prefix='25'>" in xml
    assert f"<mac address='{bridge_mac}'/>" in xml  # kept across the redefinition

    gone = converge(run_module, dict(uri=kvm1.spec.uri, name=net_name, state="absent"))
    assert gone["actions"] == ["undefine"] and find(conn, net_name) is None


def test_bridge_network_change_waits_for_a_restart_then_restarts(
        run_module, kvm1, conn, net_name, host_bridge, figures):
    first, second = host_bridge("a"), host_bridge("b")
    args = dict(uri=kvm1.spec.uri, name=net_name, mode="bridge", bridge=first, autostart=True)
    done = converge(run_module, args)
    assert done["actions"] == ["define", "autostart on", "start"]
    network = conn.networkLookupByName(net_name)
    assert network.isActive() and network.autostart() and network.bridgeName() == first

    # another bridge: written to the persistent definition, the running network keeps the old one
    args["bridge"] = second
    predicted = run_module("network", args, check=True)
    done = run_module("network", args)
    assert done["actions"] == ["define"] and predicted["actions"] == ["define"]
    assert done["restart_required"] is True and predicted["diff"] == done["diff"]
    assert done["warnings"] == [f"network {net_name} runs with an older definition (bridge); it takes effect when "
                                "the network restarts (restart: if_needed), which disconnects its guests"]
    assert f"<bridge name='{first}'/>" in running_xml(conn, net_name)
    assert f"<bridge name='{second}'/>" in persistent_xml(conn, net_name)
    assert done["network"]["bridge"] == second  # facts describe the persistent definition

    again = run_module("network", args)  # nothing more to write, but the restart is still owed
    assert again["changed"] is False and again["restart_required"] is True
    assert again["diff"]["before"]["restart_pending"] is True

    restart = dict(args, restart="if_needed")
    predicted = run_module("network", restart, check=True)
    started = time.monotonic()
    done = run_module("network", restart)
    elapsed = time.monotonic() - started
    figures("network: restart if_needed, bridge mode (kvm1)", f"{elapsed * 1000:.0f} ms")
    assert done["actions"] == predicted["actions"] == ["stop for restart", "start"]
    assert predicted["diff"] == done["diff"]
    assert done["restarted"] is True and done["restart_required"] is False
    assert "lost connectivity" in done["warnings"][0]
    assert f"<bridge name='{second}'/>" in running_xml(conn, net_name)
    assert conn.networkLookupByName(net_name).isActive() and elapsed < 10
    assert run_module("network", restart)["changed"] is False

    gone = converge(run_module, dict(uri=kvm1.spec.uri, name=net_name, state="absent"))
    assert gone["actions"] == ["stop", "undefine"]


def test_a_start_that_fails_undoes_the_define(run_module, kvm1, conn, net_name, host_bridge):
    """libvirt cannot create a bridge that exists already; it fails there, before any
    firewall rule (the daemon's log shows no iptables call for it), and the module takes
    back the define and autostart it made."""
    taken = host_bridge("c")
    failed = run_module("network", dict(uri=kvm1.spec.uri, name=net_name, bridge=taken, autostart=True))
    assert failed["failed"] is True
    assert failed["msg"].startswith(f"Could not start network {net_name} on {kvm1.spec.uri}: ")
    assert "File exists" in failed["msg"]
    assert failed["msg"].endswith("; the changes made before it were undone (define, autostart on)")
    assert find(conn, net_name) is None
    assert link_exists(taken)  # the host's bridge is untouched


def test_bridge_mode_over_a_missing_host_bridge_is_refused(run_module, kvm1, conn, net_name):
    missing = f"kvmops{os.getpid() % 0x10000:04x}z"
    assert not link_exists(missing)
    failed = run_module("network", dict(uri=kvm1.spec.uri, name=net_name, mode="bridge", bridge=missing))
    assert failed["msg"] == (f"bridge: the host bridge '{missing}' does not exist on {kvm1.spec.uri}; create it "
                             "first (mode bridge connects guests to an existing bridge)")
    assert find(conn, net_name) is None
