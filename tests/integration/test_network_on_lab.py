"""kvmops.virt.network on real lab daemons (libvirt 9.0).

On kvm1, which shares this machine's network namespace and firewall, without any
traffic: libvirt's own validation of the XML the module writes, ``virNetworkUpdate`` on
the persistent definition of a stopped network, a persistent definition that differs
from the running one (restart_required, then restart: if_needed) on bridge-mode
networks over host bridges made here, and the undo of a define when the start fails.
libvirt 9.0 runs iptables for every NAT or isolated network it starts, so kvm1 must not
start one: the lab puts a refusing script over the firewall tools in its mount namespace.

On kvmnet1, the lab's private-network host (its libvirtd has network and mount
namespaces of its own), running NAT and isolated networks: bridges, firewall rules,
ip_forward and dnsmasq all live in that namespace. There the live half of a DHCP update
is shown: the running definition, dnsmasq's hostsfile, and dnsmasq's answer to a DHCP
request from a veth in a nested namespace plugged into the network's bridge (the only
traffic here, and it stays inside kvmnet1's namespace). The machine's own firewall,
ip_forward and interfaces are compared before and after.
"""

import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree

import libvirt
import pytest

from lab import Lab

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


def network_for_one_test(conn, request):
    """A network name for one test, removed (stopped and undefined) afterwards whatever happened."""
    name = PREFIX + request.node.name.replace("_", "-")[5:35].strip("-")
    remove_network(conn, name)
    yield name
    remove_network(conn, name)
    assert find(conn, name) is None


@pytest.fixture(name="net_name")
def net_name_fixture(conn, request):
    yield from network_for_one_test(conn, request)


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


# ---------------------------------------------------------------- kvm1 may not touch the firewall


def test_root_namespace_hosts_cannot_run_the_firewall_tools(lab):
    """What keeps a NAT or isolated network on kvm1..N from changing this machine's
    firewall now that iptables is installed: in each host's mount namespace the paths
    libvirt runs (/usr/sbin/iptables, ip6tables, ebtables) lead to a refusing script."""
    assert Path("/usr/sbin/iptables").exists(), "iptables is not installed (bindep.txt, make deps)"
    for host in lab.running_hosts():
        assert host.unrefused_firewall_tools() == [], host.spec.name
        for tool in ("/usr/sbin/iptables", "/usr/sbin/ip6tables"):
            refused = subprocess.run(["nsenter", f"--mount=/proc/{host.pid()}/ns/mnt", tool, "-V"],
                                     capture_output=True, text=True, timeout=30, check=False)
            assert refused.returncode == 1, (host.spec.name, tool, refused.stdout)
            assert refused.stderr.startswith(f"kvmops lab: {host.spec.name} shares this machine's firewall, "
                                             f"so {tool} is refused here"), refused.stderr


# ---------------------------------------------------------------- kvmnet1: running NAT and isolated networks

# Inside kvmnet1's namespace no address of the machine is visible; these stay off the
# range the kvm1 tests use all the same.
PRIVATE_SUBNETS = [ipaddress.ip_network(f"10.214.{third}.0/24") for third in range(40, 60)]
FIREWALL_DUMPS = ("iptables-legacy-save", "iptables-nft-save", "ip6tables-legacy-save", "ip6tables-nft-save")
DB1_MAC, WEB1_MAC, WEB2_MAC = "52:54:00:21:31:01", "52:54:00:21:31:02", "52:54:00:21:31:03"

# A DHCP client that only asks: DISCOVER from port 68 on one interface, prints the address
# of the OFFER that answers it. No REQUEST, so dnsmasq records no lease. Run inside a
# namespace of its own, with no address: the request's source is 0.0.0.0 like a guest's.
_DHCP_PROBE = r"""
import os, socket, struct, sys, time
device, mac, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
xid = os.urandom(4)
discover = (struct.pack("!BBBB4sHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000, bytes(4), bytes(4), bytes(4),
                        bytes(4), bytes.fromhex(mac.replace(":", "")).ljust(16, b"\0"), bytes(64), bytes(128))
            + b"\x63\x82\x53\x63" + bytes([53, 1, 1, 255]))
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
    sock.bind(("0.0.0.0", 68))
    sock.settimeout(0.2)
    deadline, next_send = time.monotonic() + timeout, 0.0
    while time.monotonic() < deadline:
        if time.monotonic() >= next_send:
            sock.sendto(discover, ("255.255.255.255", 67))
            next_send = time.monotonic() + 0.5
        try:
            reply = sock.recv(4096)
        except socket.timeout:
            continue
        if len(reply) > 240 and reply[0] == 2 and reply[4:8] == xid:
            print(socket.inet_ntoa(reply[16:20]))
            sys.exit(0)
sys.exit("no DHCP offer within %s s" % timeout)
"""


def in_host(host, *command, check=True):
    """Run a command in the network namespace of a lab network host."""
    return subprocess.run(["nsenter", f"--net={host.namespace_path()}", *command], capture_output=True, text=True,
                          timeout=30, check=check)


def root_namespace_state():
    """This machine's firewall (every table of both iptables backends), forwarding switches and interfaces."""
    firewall = {}
    for command in FIREWALL_DUMPS:
        dumped = subprocess.run([command], capture_output=True, text=True, timeout=30, check=False)
        # comment lines carry the time of the dump
        firewall[command] = (dumped.returncode, [line for line in dumped.stdout.splitlines()
                                                 if not line.startswith("#")])
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, timeout=30,
                           check=True).stdout
    return dict(firewall=firewall,
                ip_forward=Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
                ipv6_forwarding=Path("/proc/sys/net/ipv6/conf/all/forwarding").read_text().strip(),
                links=sorted(line.split(": ")[1].split("@")[0] for line in links.splitlines()))


def dnsmasq_pid(host, name):
    """The PID of the network's dnsmasq, checked to be a dnsmasq in the host's network namespace."""
    pid = int((host.dir / "run" / "network" / f"{name}.pid").read_text().strip())
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "dnsmasq"
    assert os.readlink(f"/proc/{pid}/ns/net") == host.namespace_file("net").read_text().strip()
    return pid


def running(pid):
    """Whether a process runs (a zombie waiting for its parent to collect it does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def hostsfile_lines(host, name):
    """dnsmasq's static hosts file of the network: the daemon's /var/lib/libvirt/dnsmasq/<name>.hostsfile."""
    return (host.dir / "lib" / "dnsmasq" / f"{name}.hostsfile").read_text().splitlines()


def in_range(address, dhcp_range):
    start, end = (ipaddress.ip_address(dhcp_range[key]) for key in ("start", "end"))
    return address is not None and start <= ipaddress.ip_address(address) <= end


@pytest.fixture(name="net_conn")
def net_conn_fixture(network_host):
    conn = libvirt.open(network_host.spec.uri)
    yield conn
    conn.close()


@pytest.fixture(name="private_net")
def private_net_fixture(net_conn, request):
    """The same on kvmnet1."""
    yield from network_for_one_test(net_conn, request)


@pytest.fixture(name="private_subnet")
def private_subnet_fixture(net_conn):
    """A /24 that no network of kvmnet1 uses."""
    used = []
    for network in net_conn.listAllNetworks():
        for ip in ElementTree.fromstring(network.XMLDesc(0)).findall("ip"):
            mask = ip.get("prefix") or ip.get("netmask") or "32"
            used.append(ipaddress.ip_interface(f"{ip.get('address')}/{mask}").network)
    for candidate in PRIVATE_SUBNETS:
        if not any(candidate.overlaps(network) for network in used):
            return candidate
    pytest.fail("no free subnet among %s..%s" % (PRIVATE_SUBNETS[0], PRIVATE_SUBNETS[-1]))


@pytest.fixture(name="dhcp_client")
def dhcp_client_fixture(network_host):
    """plug(bridge) -> ask(mac): plugs a veth into a bridge of kvmnet1; its other end sits in
    a namespace of its own (held by a sleeping process). ask(mac) sends a DHCP DISCOVER for
    that MAC from there and returns the address dnsmasq offers, or None. Everything is
    removed afterwards: the holder is killed, and its namespace and veth go with it."""
    holders, ports = [], []

    def plug(bridge):
        host_net = network_host.namespace_path()
        holder = subprocess.Popen(["nsenter", f"--net={host_net}", "unshare", "--net", "sleep", "600"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        holders.append(holder)
        guest_net = f"/proc/{holder.pid}/ns/net"
        deadline = time.monotonic() + 10
        while Path(f"/proc/{holder.pid}/comm").read_text().strip() != "sleep":  # unshare has done its work
            assert time.monotonic() < deadline and holder.poll() is None, "the DHCP client's namespace did not start"
            time.sleep(0.02)
        port = f"itdhcp{len(ports)}"
        in_host(network_host, "ip", "link", "add", port, "type", "veth", "peer", "name", "eth0",
                "netns", str(holder.pid))
        ports.append(port)
        in_host(network_host, "ip", "link", "set", port, "master", bridge, "up")
        subprocess.run(["nsenter", f"--net={guest_net}", "ip", "link", "set", "eth0", "up"], check=True,
                       capture_output=True, timeout=30)

        def ask(mac):
            asked = subprocess.run(["nsenter", f"--net={guest_net}", sys.executable, "-c", _DHCP_PROBE, "eth0", mac,
                                    "20"], capture_output=True, text=True, timeout=60, check=False)
            return asked.stdout.strip() or None

        return ask

    yield plug
    for holder in holders:
        holder.kill()
        holder.wait(timeout=30)
    if network_host.is_running():
        for port in ports:
            in_host(network_host, "ip", "link", "del", port, check=False)  # normally gone with its peer
        assert not [port for port in ports if in_host(network_host, "ip", "link", "show", port, check=False)
                    .returncode == 0]


def test_isolated_network_dhcp_hosts_change_live_on_the_private_host(
        run_module, network_host, net_conn, private_net, private_subnet, dhcp_client, figures):
    root_before = root_namespace_state()
    uri, hosts = network_host.spec.uri, list(private_subnet.hosts())
    gateway, static_ip, bridge = hosts[0], hosts[9], "kvmops-iso"
    dhcp_range = dict(start=str(hosts[99]), end=str(hosts[149]))
    args = dict(uri=uri, name=private_net, mode="isolated", bridge=bridge, ipv4=f"{gateway}/24",
                dhcp=dict(range=dhcp_range, hosts=[]))
    started = time.monotonic()
    done = converge(run_module, args)
    figures("network: define+start isolated+DHCP, 3 runs (kvmnet1)", f"{(time.monotonic() - started) * 1000:.0f} ms")
    assert done["actions"] == ["define", "start"] and done["network"]["active"] is True
    # the bridge, its address and its firewall rules exist in kvmnet1's namespace only
    assert f"inet {gateway}/24 " in in_host(network_host, "ip", "-o", "-4", "addr", "show", "dev", bridge).stdout
    assert not link_exists(bridge)
    assert f"-A LIBVIRT_INP -i {bridge} -p udp -m udp --dport 67 -j ACCEPT" in in_host(network_host,
                                                                                       "iptables-save").stdout
    dnsmasq = dnsmasq_pid(network_host, private_net)
    assert hostsfile_lines(network_host, private_net) == []
    ask = dhcp_client(bridge)
    assert in_range(ask(DB1_MAC), dhcp_range)

    # a static host added to the running network: one virNetworkUpdate, live and persistent
    entry = f"<host mac='{DB1_MAC}' name='db1' ip='{static_ip}'/>"
    args["dhcp"]["hosts"] = [dict(mac=DB1_MAC, name="db1", ip=str(static_ip))]
    started = time.monotonic()
    done = converge(run_module, args)
    figures("network: live DHCP host add, 3 runs (kvmnet1)", f"{(time.monotonic() - started) * 1000:.0f} ms")
    assert done["actions"] == [f"add DHCP host ip={static_ip} mac={DB1_MAC} name=db1 (live and persistent)"]
    assert done["restart_required"] is False and done["warnings"] == []
    assert entry in running_xml(net_conn, private_net)
    assert entry in persistent_xml(net_conn, private_net)
    assert hostsfile_lines(network_host, private_net) == [f"{DB1_MAC},{static_ip},db1"]
    assert dnsmasq_pid(network_host, private_net) == dnsmasq  # it re-read its files: not restarted
    assert ask(DB1_MAC) == str(static_ip)
    assert in_range(ask(WEB1_MAC), dhcp_range)  # anyone else still gets the range

    # removed again: gone from both definitions and from dnsmasq
    args["dhcp"]["hosts"] = []
    done = converge(run_module, args)
    assert done["actions"] == [f"delete DHCP host ip={static_ip} mac={DB1_MAC} name=db1 (live and persistent)"]
    assert entry not in running_xml(net_conn, private_net)
    assert entry not in persistent_xml(net_conn, private_net)
    assert hostsfile_lines(network_host, private_net) == []
    assert dnsmasq_pid(network_host, private_net) == dnsmasq
    assert in_range(ask(DB1_MAC), dhcp_range)

    gone = converge(run_module, dict(uri=uri, name=private_net, state="absent"))
    assert gone["actions"] == ["stop", "undefine"]
    assert in_host(network_host, "ip", "link", "show", bridge, check=False).returncode != 0
    assert not running(dnsmasq)
    assert f"-i {bridge} " not in in_host(network_host, "iptables-save").stdout
    assert root_namespace_state() == root_before


def test_nat_network_runs_with_its_firewall_and_forwarding_inside_the_private_host(
        run_module, network_host, net_conn, private_net, private_subnet, figures):
    root_before = root_namespace_state()
    uri, hosts = network_host.spec.uri, list(private_subnet.hosts())
    bridge, subnet = "kvmops-nat", private_subnet.with_prefixlen
    dhcp_range = dict(start=str(hosts[99]), end=str(hosts[149]))
    args = dict(uri=uri, name=private_net, mode="nat", bridge=bridge, ipv4=f"{hosts[0]}/24", autostart=True,
                dhcp=dict(range=dhcp_range, hosts=[dict(mac=WEB1_MAC, name="web1", ip=str(hosts[10]))]))
    started = time.monotonic()
    done = converge(run_module, args)
    figures("network: define+start NAT+DHCP, 3 runs (kvmnet1)", f"{(time.monotonic() - started) * 1000:.0f} ms")
    assert done["actions"] == ["define", "autostart on", "start"]
    assert done["network"]["mode"] == "nat" and done["network"]["active"] is True
    nat_rules = in_host(network_host, "iptables-save", "-t", "nat").stdout
    assert f"-A LIBVIRT_PRT -s {subnet} ! -d {subnet} -j MASQUERADE" in nat_rules
    assert f"-A LIBVIRT_FWO -s {subnet} -i {bridge} -j ACCEPT" in in_host(network_host, "iptables-save").stdout
    # libvirt turned forwarding on: in kvmnet1's namespace, not the machine's
    assert in_host(network_host, "cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"
    assert root_namespace_state() == root_before
    dnsmasq = dnsmasq_pid(network_host, private_net)

    # a live DHCP update on a NAT network too
    args["dhcp"]["hosts"].append(dict(mac=WEB2_MAC, name="web2", ip=str(hosts[11])))
    done = converge(run_module, args)
    assert done["actions"] == [f"add DHCP host ip={hosts[11]} mac={WEB2_MAC} name=web2 (live and persistent)"]
    assert f"<host mac='{WEB2_MAC}' name='web2' ip='{hosts[11]}'/>" in running_xml(net_conn, private_net)
    assert hostsfile_lines(network_host, private_net) == [f"{WEB1_MAC},{hosts[10]},web1",
                                                          f"{WEB2_MAC},{hosts[11]},web2"]
    assert dnsmasq_pid(network_host, private_net) == dnsmasq

    # another range: ranges cannot be modified, so the old one is deleted and the new one added, both live
    new_range = dict(start=str(hosts[159]), end=str(hosts[199]))
    args["dhcp"]["range"] = new_range
    started = time.monotonic()
    done = converge(run_module, args)
    figures("network: live DHCP range replace, 3 runs (kvmnet1)", f"{(time.monotonic() - started) * 1000:.0f} ms")
    assert done["actions"] == [f"delete DHCP range end={hosts[149]} start={hosts[99]} (live and persistent)",
                               f"add DHCP range end={hosts[199]} start={hosts[159]} (live and persistent)"]
    assert f"<range start='{hosts[159]}' end='{hosts[199]}'/>" in running_xml(net_conn, private_net)
    assert f"<range start='{hosts[99]}'" not in running_xml(net_conn, private_net)
    assert f"<range start='{hosts[159]}' end='{hosts[199]}'/>" in persistent_xml(net_conn, private_net)
    conf = (network_host.dir / "lib" / "dnsmasq" / f"{private_net}.conf").read_text()
    assert f"dhcp-range={hosts[159]},{hosts[199]},255.255.255.0" in conf and f"{hosts[99]}," not in conf
    # ranges live in dnsmasq's configuration, not in a file it re-reads: libvirt restarts it
    assert dnsmasq_pid(network_host, private_net) != dnsmasq

    gone = converge(run_module, dict(uri=uri, name=private_net, state="absent"))
    assert gone["actions"] == ["stop", "undefine"]
    assert subnet not in in_host(network_host, "iptables-save", "-t", "nat").stdout
    assert root_namespace_state() == root_before


def test_lab_stop_ends_the_dnsmasq_of_a_private_host_whose_daemon_died(run_module, network_host, tmp_path):
    """A second private-network host in a lab of its own: its libvirtd is killed outright,
    so nobody stops its network; stop() must still find the network's dnsmasq (in the
    host's namespaces) and end it, and with it the namespace."""
    lab = Lab(tmp_path)
    host, _started = lab.start_network_host(2, log=lambda line: None)
    try:
        assert host.spec.uri != network_host.spec.uri
        done = run_module("network", dict(uri=host.spec.uri, name="orphaned", ipv4="10.214.60.1/24",
                                          dhcp=dict(range=dict(start="10.214.60.100", end="10.214.60.120"))))
        assert done["actions"] == ["define", "start"], done
        dnsmasq = dnsmasq_pid(host, "orphaned")
        daemon = host.pid()
        os.kill(daemon, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while running(daemon):
            assert time.monotonic() < deadline, "libvirtd survived SIGKILL"
            time.sleep(0.05)
        assert running(dnsmasq)
    finally:
        swept = host.stop()
    assert dnsmasq in swept
    assert not running(dnsmasq)
    assert host.namespace_pids() == [] and lab.leftovers() == {}
