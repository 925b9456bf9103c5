# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""libvirt virtual networks: desired state, views, and the steps that get there.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

The flow is: ``parse_request`` checks the options without a connection, ``read_network``
reads what exists, ``plan_network`` checks the options against it and lists the steps
(nothing changed yet), ``Plan.apply`` runs them and undoes the earlier ones if a later
one fails. A network's persistent definition is edited in place (elements the collection
does not manage, such as the bridge MAC or DNS entries, are kept). On a running network
DHCP ranges and static hosts change live and persistently through ``virNetworkUpdate``;
any other change is written to the persistent definition only and takes effect when the
network restarts.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from xml.etree import ElementTree

from ansible_collections.kvmops.virt.plugins.module_utils.changes import resource_diff
from ansible_collections.kvmops.virt.plugins.module_utils.connection import LibvirtOperationError
from ansible_collections.kvmops.virt.plugins.module_utils.safe_xml import parse_xml, sub_element, to_xml

try:
    import libvirt
except ImportError:
    libvirt = None

MODES = ("nat", "isolated", "bridge")
# Forward modes whose network has its own addresses; the others (bridge, and the
# direct/hostdev modes the module only reports) are plain layer 2.
ADDRESSED_MODES = frozenset(("nat", "isolated", "route", "open"))
FORWARD_DEV_MODES = frozenset(("nat", "route"))
DEFAULT_MODE = "isolated"
MIN_MTU, MAX_MTU = 68, 65535
MAX_PREFIX = 30  # a /31 or /32 leaves no address for a guest

_NETWORK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_INTERFACE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$")  # Linux: at most 15 characters
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_HOST_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_NETWORK_NAME_RULE = "use letters, digits, '_', '.' and '-', starting with a letter or digit, at most 64 characters"
_INTERFACE_NAME_RULE = "use letters, digits, '_', '.' and '-', at most 15 characters (a Linux interface name)"

# The options that describe a network's definition; absent from a request when not given.
DEFINITION_OPTIONS = ("mode", "bridge", "forward_dev", "ipv4", "domain", "mtu", "dhcp")


class NetworkError(ValueError):
    """A request that is malformed or cannot be met; str() says what and where."""


# ---------------------------------------------------------------- options -> request


def parse_request(params):
    """The validated request for a module's params: name, state, active, autostart,
    restart and ``definition`` (only the definition options that were given, normalised;
    None or [] where the option asks to remove something)."""
    name = params["name"]
    if not isinstance(name, str) or not _NETWORK_NAME.match(name):
        raise NetworkError("name: %r is not a usable network name; %s" % (name, _NETWORK_NAME_RULE))
    definition = {}
    if params.get("mode") is not None:
        definition["mode"] = params["mode"]
    # an empty bridge is the same as none given: libvirt names a new network's bridge itself
    if params.get("bridge"):
        definition["bridge"] = _interface_name(params["bridge"], "bridge")
    if params.get("forward_dev") is not None:
        definition["forward_dev"] = _interface_name(params["forward_dev"], "forward_dev")
    if params.get("ipv4") is not None:
        definition["ipv4"] = parse_ipv4(params["ipv4"]).with_prefixlen if params["ipv4"] != "" else None
    if params.get("domain") is not None:
        definition["domain"] = _domain_name(params["domain"]) if params["domain"] != "" else None
    if params.get("mtu") is not None:
        definition["mtu"] = _mtu(params["mtu"])
    if params.get("dhcp") is not None:
        definition["dhcp"] = parse_dhcp(params["dhcp"])
    return dict(name=name, state=params.get("state") or "present", active=params.get("active", True),
                autostart=params.get("autostart"), restart=params.get("restart") or "never",
                definition=definition)


def _interface_name(value, option):
    if value == "":
        return None
    if not _INTERFACE_NAME.match(value) or value in (".", ".."):
        raise NetworkError("%s: %r is not a usable interface name; %s" % (option, value, _INTERFACE_NAME_RULE))
    return value


def _domain_name(value):
    labels = value.rstrip(".").split(".")
    if len(value) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise NetworkError("domain: %r is not a DNS domain name (labels of letters, digits and '-', "
                           "separated by dots, such as lab.example.com)" % value)
    return value.rstrip(".")


def _mtu(value):
    if value == 0:
        return None
    if not MIN_MTU <= value <= MAX_MTU:
        raise NetworkError("mtu: %d is out of range; use %d to %d bytes, or 0 to remove the setting"
                           % (value, MIN_MTU, MAX_MTU))
    return value


def parse_ipv4(text, option="ipv4"):
    """The host side's address and prefix as an IPv4Interface; NetworkError otherwise."""
    if "/" not in str(text):
        raise NetworkError("%s: %r has no prefix; write the host's address with the network's prefix, "
                           "such as 192.168.150.1/24" % (option, text))
    try:
        interface = ipaddress.ip_interface(str(text))
    except ValueError:
        raise NetworkError("%s: %r is not an address with a prefix, such as 192.168.150.1/24" % (option, text)) from None
    if interface.version != 4:
        raise NetworkError("%s: %r is an IPv6 address; give an IPv4 address such as 192.168.150.1/24" % (option, text))
    network = interface.network
    if network.prefixlen > MAX_PREFIX:
        raise NetworkError("%s: %s leaves no address for guests; use a prefix of /%d or shorter"
                           % (option, interface.with_prefixlen, MAX_PREFIX))
    if interface.ip in (network.network_address, network.broadcast_address):
        raise NetworkError("%s: %s is the %s address of %s; give the host's own address in it, such as %s"
                           % (option, interface.with_prefixlen, _special_name(interface.ip, network),
                              network, ipaddress.ip_interface("%s/%d" % (network.network_address + 1,
                                                                         network.prefixlen)).with_prefixlen))
    return interface


def _special_name(address, network):
    return "network" if address == network.network_address else "broadcast"


def _ipv4_address(text, option):
    try:
        address = ipaddress.ip_address(str(text))
    except ValueError:
        raise NetworkError("%s: %r is not an IPv4 address" % (option, text)) from None
    if address.version != 4:
        raise NetworkError("%s: %r is an IPv6 address; DHCP here is IPv4" % (option, text))
    return address


def parse_dhcp(dhcp):
    """dict(ranges=[{start, end}], hosts=[{mac, name, ip}]) from the ``dhcp`` option, formats
    checked (which subnet they must lie in is checked later, against the network's address)."""
    ranges = []
    if dhcp.get("range"):
        start = _ipv4_address(dhcp["range"].get("start"), "dhcp.range.start")
        end = _ipv4_address(dhcp["range"].get("end"), "dhcp.range.end")
        if start > end:
            raise NetworkError("dhcp.range: start %s is after end %s" % (start, end))
        ranges.append(dict(start=str(start), end=str(end)))
    hosts = [_dhcp_host(host, "dhcp.hosts[%d]" % index) for index, host in enumerate(dhcp.get("hosts") or [])]
    for field in ("mac", "ip", "name"):
        _refuse_duplicates(hosts, field)
    return dict(ranges=ranges, hosts=sort_hosts(hosts))


def _dhcp_host(host, where):
    ip = _ipv4_address(host.get("ip"), where + ".ip") if host.get("ip") else None
    if ip is None:
        raise NetworkError("%s: ip is required" % where)
    mac = host.get("mac")
    if mac:
        mac = mac.lower()
        if not _MAC.match(mac):
            raise NetworkError("%s.mac: %r is not a MAC address; write six hex pairs separated by ':', "
                               "such as 52:54:00:12:34:56" % (where, host["mac"]))
        if int(mac[:2], 16) & 1:
            raise NetworkError("%s.mac: %s is a multicast address; a guest's MAC must be unicast "
                               "(even first byte, such as 52:54:00:...)" % (where, mac))
    name = host.get("name")
    if name and not _HOST_LABEL.match(name):
        raise NetworkError("%s.name: %r is not a host name; use letters, digits and '-', at most 63 "
                           "characters, without dots (the network's domain is added to it)" % (where, name))
    if not mac and not name:
        raise NetworkError("%s: give mac or name (or both) to say which guest gets %s" % (where, ip))
    return dict(mac=mac or None, name=name or None, ip=str(ip))


def _refuse_duplicates(hosts, field):
    seen = {}
    for index, host in enumerate(hosts):
        value = host[field]
        if value is None:
            continue
        if value in seen:
            raise NetworkError("dhcp.hosts[%d].%s: %s is already used by dhcp.hosts[%d]; each static host needs "
                               "its own %s" % (index, field, value, seen[value], field))
        seen[value] = index


def sort_hosts(hosts):
    return sorted(hosts, key=lambda host: (ipaddress.ip_address(host["ip"]), host["mac"] or "", host["name"] or ""))


def sort_ranges(ranges):
    return sorted(ranges, key=lambda item: (ipaddress.ip_address(item["start"]), ipaddress.ip_address(item["end"])))


# ---------------------------------------------------------------- XML <-> definition view


def empty_dhcp():
    return dict(ranges=[], hosts=[])


def ipv4_element(root):
    """(the first IPv4 <ip> element, its index among all <ip> elements) or (None, None)."""
    for index, element in enumerate(root.findall("ip")):
        if element.get("family", "ipv4") == "ipv4" and ":" not in (element.get("address") or ""):
            return element, index
    return None, None


def _ipv4_of(element):
    if element is None or not element.get("address"):
        return None
    mask = element.get("prefix") or element.get("netmask") or "32"
    return ipaddress.ip_interface("%s/%s" % (element.get("address"), mask)).with_prefixlen


def _dhcp_of(element):
    dhcp = element.find("dhcp") if element is not None else None
    if dhcp is None:
        return empty_dhcp()
    ranges = [dict(start=item.get("start"), end=item.get("end")) for item in dhcp.findall("range")]
    hosts = [dict(mac=(item.get("mac") or "").lower() or None, name=item.get("name"), ip=item.get("ip"))
             for item in dhcp.findall("host")]
    return dict(ranges=sort_ranges(ranges), hosts=sort_hosts(hosts))


def definition_view(root):
    """What the module manages of a network definition (the parsed <network> element)."""
    forward = root.find("forward")
    bridge = root.find("bridge")
    ip_element, _index = ipv4_element(root)
    mtu = root.find("mtu")
    domain = root.find("domain")
    return dict(
        name=root.findtext("name"),
        mode="isolated" if forward is None else forward.get("mode", "nat"),
        bridge=bridge.get("name") if bridge is not None else None,
        forward_dev=forward.get("dev") if forward is not None else None,
        ipv4=_ipv4_of(ip_element),
        domain=domain.get("name") if domain is not None else None,
        mtu=int(mtu.get("size")) if mtu is not None and mtu.get("size") else None,
        dhcp=_dhcp_of(ip_element),
    )


def new_definition_view(name):
    return dict(name=name, mode=DEFAULT_MODE, bridge=None, forward_dev=None, ipv4=None, domain=None, mtu=None,
                dhcp=empty_dhcp())


def differs_only_in_dhcp(one, other):
    return one["dhcp"] != other["dhcp"] and {k: v for k, v in one.items() if k != "dhcp"} == \
        {k: v for k, v in other.items() if k != "dhcp"}


def host_element(host, tag="host"):
    element = ElementTree.Element(tag)
    for attribute in ("mac", "name", "ip"):
        if host.get(attribute):
            element.set(attribute, host[attribute])
    return element


def range_element(item):
    return ElementTree.Element("range", {"start": item["start"], "end": item["end"]})


def write_definition(root, desired):
    """Edit a <network> element in place so that definition_view(root) == desired; elements
    the module does not manage stay as they are, unless the forward mode forbids them."""
    _set_text_child(root, "name", desired["name"], index=0)
    _write_forward(root, desired)
    _write_bridge(root, desired)
    if desired["mode"] in ADDRESSED_MODES:
        _set_attribute_child(root, "domain", "name", desired["domain"])
        _set_attribute_child(root, "mtu", "size", desired["mtu"])
        _write_ipv4(root, desired)
    else:
        # libvirt refuses these in a layer 2 network ("Unsupported <ip> element ...")
        for tag in ("ip", "domain", "mtu", "dns", "mac", "route"):
            for element in root.findall(tag):
                root.remove(element)
    return root


def _set_text_child(root, tag, text, index=None):
    element = root.find(tag)
    if element is None:
        element = ElementTree.Element(tag)
        root.insert(index if index is not None else len(root), element)
    element.text = text


def _set_attribute_child(root, tag, attribute, value):
    element = root.find(tag)
    if value is None:
        if element is not None:
            root.remove(element)
        return
    if element is None:
        element = sub_element(root, tag)
    element.set(attribute, str(value))


def _write_forward(root, desired):
    forward = root.find("forward")
    if desired["mode"] == "isolated":
        if forward is not None:
            root.remove(forward)
        return
    if forward is None or forward.get("mode", "nat") != desired["mode"]:
        if forward is not None:
            root.remove(forward)  # another mode's children (nat ports, interfaces) do not carry over
        forward = ElementTree.Element("forward")
        root.insert(1, forward)
    forward.set("mode", desired["mode"])
    if desired["forward_dev"]:
        forward.set("dev", desired["forward_dev"])
    elif "dev" in forward.attrib:
        del forward.attrib["dev"]
    if desired["mode"] in FORWARD_DEV_MODES:
        # libvirt lists the forward device again as <interface dev=...>; a stale one would contradict dev
        for interface in forward.findall("interface"):
            if interface.get("dev") != desired["forward_dev"]:
                forward.remove(interface)


def _write_bridge(root, desired):
    bridge = root.find("bridge")
    if bridge is None:
        if desired["bridge"] is None:
            return
        bridge = sub_element(root, "bridge")
    if desired["bridge"] is None:
        bridge.attrib.pop("name", None)  # libvirt picks a free virbrN when the network is defined
    else:
        bridge.set("name", desired["bridge"])
    if desired["mode"] not in ADDRESSED_MODES:
        for attribute in ("stp", "delay", "zone", "macTableManager"):
            bridge.attrib.pop(attribute, None)


def _write_ipv4(root, desired):
    element, _index = ipv4_element(root)
    if desired["ipv4"] is None:
        if element is not None:
            root.remove(element)
        return
    if element is None:
        element = sub_element(root, "ip")
    interface = ipaddress.ip_interface(desired["ipv4"])
    for attribute in ("netmask", "family"):
        element.attrib.pop(attribute, None)
    element.set("address", str(interface.ip))
    element.set("prefix", str(interface.network.prefixlen))
    _write_dhcp(element, desired["dhcp"])


def _write_dhcp(ip_element, dhcp):
    element = ip_element.find("dhcp")
    if not dhcp["ranges"] and not dhcp["hosts"]:
        if element is not None:
            ip_element.remove(element)
        return
    if element is None:
        element = sub_element(ip_element, "dhcp")
    # keep the existing element of an unchanged entry: it may hold children (<lease>) we do not manage
    kept = {}
    for child in list(element):
        if child.tag in ("range", "host"):
            kept.setdefault(_entry_key(child), child)
            element.remove(child)
    for item in dhcp["ranges"]:
        element.append(kept.get(_entry_key(range_element(item))) or range_element(item))
    for host in dhcp["hosts"]:
        element.append(kept.get(_entry_key(host_element(host))) or host_element(host))


def _entry_key(element):
    attributes = ("start", "end") if element.tag == "range" else ("mac", "name", "ip")
    return (element.tag,) + tuple((element.get(name) or "").lower() for name in attributes)


# ---------------------------------------------------------------- what exists


class CurrentNetwork:
    """A network as it is now: its handle, state, and definitions (persistent and running)."""

    def __init__(self, handle, active, persistent, autostart, config_xml, live_xml):
        self.handle = handle
        self.uuid = handle.UUIDString()
        self.active = active
        self.persistent = persistent
        self.autostart = autostart
        self.config_xml = config_xml
        self.live_xml = live_xml
        self.config_root = parse_xml(config_xml, "the definition of network %s" % handle.name())
        self.live_root = parse_xml(live_xml, "the running definition of network %s" % handle.name()) if live_xml else None
        self.config = definition_view(self.config_root)
        self.live = definition_view(self.live_root) if self.live_root is not None else None


def find_network(conn, name):
    """The virNetwork called ``name``, or None."""
    try:
        return conn.handle.networkLookupByName(name)
    except libvirt.libvirtError as error:
        if error.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
            return None
        raise


def read_network(conn, name):
    """CurrentNetwork for ``name``, or None when there is no such network."""
    with conn.operation("read network %s" % name):
        handle = find_network(conn, name)
        if handle is None:
            return None
        active, persistent = bool(handle.isActive()), bool(handle.isPersistent())
        autostart = bool(handle.autostart()) if persistent else False
        live_xml = handle.XMLDesc(0)
        config_xml = _persistent_xml(handle) if persistent else live_xml
    return CurrentNetwork(handle, active, persistent, autostart, config_xml, live_xml if active else None)


def _persistent_xml(handle):
    """The persistent definition; libvirt's test driver cannot tell it apart from the running
    one (it refuses VIR_NETWORK_XML_INACTIVE), so there the running one stands in."""
    try:
        return handle.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)
    except libvirt.libvirtError as error:
        if error.get_error_code() in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
            return handle.XMLDesc(0)
        raise


def network_facts(current):
    """The ``network`` return value for a network as read."""
    facts = copy.deepcopy(current.config)
    facts.update(uuid=current.uuid, active=current.active, autostart=current.autostart,
                 persistent=current.persistent)
    return facts


# ---------------------------------------------------------------- desired definition


def desired_definition(name, requested, current):
    """The definition the network must have: the current one (or the defaults for a new
    network) with the requested options applied; NetworkError when the result cannot work."""
    base = current.config if current is not None else new_definition_view(name)
    desired = copy.deepcopy(base)
    desired["name"] = name
    desired.update({key: copy.deepcopy(value) for key, value in requested.items() if key != "mode"})
    mode = requested.get("mode", base["mode"])
    desired["mode"] = mode
    mode_changed = current is not None and mode != current.config["mode"]
    if mode_changed and "bridge" not in requested:
        # a host bridge's name and a libvirt-made bridge's name mean different things
        desired["bridge"] = None
    if mode_changed and mode not in FORWARD_DEV_MODES and "forward_dev" not in requested:
        desired["forward_dev"] = None
    if mode in ADDRESSED_MODES:
        _check_addressed(desired, requested)
    else:
        _check_layer2(desired, requested, mode_changed, current is None)
    return desired


def _check_layer2(desired, requested, mode_changed, is_new):
    mode = desired["mode"]
    for option in ("ipv4", "domain", "mtu", "forward_dev"):
        if requested.get(option):
            raise NetworkError("%s: a network in mode %s has no %s; libvirt only forwards guests' traffic to "
                               "the host bridge" % (option, mode, _what(option)))
    if requested.get("dhcp") and (requested["dhcp"]["ranges"] or requested["dhcp"]["hosts"]):
        raise NetworkError("dhcp: a network in mode %s has no DHCP server of libvirt's; whatever is on the host "
                           "bridge's network serves DHCP" % mode)
    desired.update(ipv4=None, domain=None, mtu=None, forward_dev=None, dhcp=empty_dhcp())
    if desired["bridge"] is None and mode == "bridge" and (is_new or mode_changed):
        raise NetworkError("bridge: mode bridge needs the name of an existing host bridge%s"
                           % (" (the network's current bridge is not carried over when the mode changes)"
                              if mode_changed else ""))


def _what(option):
    return dict(ipv4="address", domain="DNS domain", mtu="MTU of its own", forward_dev="forward device")[option]


def _check_addressed(desired, requested):
    mode = desired["mode"]
    if desired["forward_dev"] and mode not in FORWARD_DEV_MODES:
        raise NetworkError("forward_dev: a network in mode %s forwards nothing; forward_dev is for mode nat" % mode)
    if mode == "nat" and desired["ipv4"] is None:
        raise NetworkError("ipv4: mode nat needs the host side's address, such as 192.168.150.1/24")
    dhcp = desired["dhcp"]
    if desired["ipv4"] is None:
        if dhcp["ranges"] or dhcp["hosts"]:
            raise NetworkError("dhcp: DHCP needs an address for the network; give ipv4%s"
                               % ("" if "dhcp" in requested else ", or dhcp: {} to remove DHCP"))
        return
    interface = ipaddress.ip_interface(desired["ipv4"])
    desired["ipv4"] = interface.with_prefixlen
    _check_dhcp_in_network(interface, dhcp, kept="dhcp" not in requested)


def _check_dhcp_in_network(interface, dhcp, kept):
    """Ranges and static hosts must lie inside the network, off its network, broadcast and host addresses."""
    hint = " (it is the network's current DHCP setting: give dhcp too when changing ipv4)" if kept else ""
    for item in dhcp["ranges"]:
        start, end = ipaddress.ip_address(item["start"]), ipaddress.ip_address(item["end"])
        # a range may contain the host's own address: dnsmasq never leases that one
        for label, address in (("start", start), ("end", end)):
            _check_usable(interface, address, "dhcp.range.%s" % label, hint)
    for index, host in enumerate(dhcp["hosts"]):
        _check_usable(interface, ipaddress.ip_address(host["ip"]), "dhcp.hosts[%d].ip" % index, hint)


def _check_usable(interface, address, where, hint):
    network = interface.network
    if address not in network:
        raise NetworkError("%s: %s is not in the network %s of ipv4 %s%s"
                           % (where, address, network, interface.with_prefixlen, hint))
    if address in (network.network_address, network.broadcast_address):
        raise NetworkError("%s: %s is the %s address of %s%s"
                           % (where, address, _special_name(address, network), network, hint))
    if address == interface.ip and where.startswith("dhcp.hosts"):
        raise NetworkError("%s: %s is the host's own address on the network%s" % (where, address, hint))


# ---------------------------------------------------------------- DHCP updates


class DhcpOperation:
    """One virNetworkUpdate call: add, delete or modify one DHCP range or static host."""

    def __init__(self, command, section, element, parent_index, undo_command, undo_element, flags=0):
        self.command = command
        self.section = section
        self.element = element
        self.parent_index = parent_index
        self.undo_command = undo_command
        self.undo_element = undo_element
        self.flags = flags

    @property
    def key(self):
        return (self.command, self.section, to_xml(self.element), self.parent_index)

    def describe(self):
        verb = {libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST: "add",
                libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE: "delete",
                libvirt.VIR_NETWORK_UPDATE_COMMAND_MODIFY: "modify"}[self.command]
        what = ("DHCP range" if self.section == libvirt.VIR_NETWORK_SECTION_IP_DHCP_RANGE
                else "DHCP host")
        where = " and ".join(name for flag, name in ((libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE, "live"),
                                                     (libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG, "persistent"))
                             if self.flags & flag)
        attributes = " ".join("%s=%s" % item for item in sorted(self.element.attrib.items()))
        return "%s %s %s (%s)" % (verb, what, attributes, where)


def dhcp_operations(current, desired, parent_index):
    """The updates that turn DHCP setting ``current`` into ``desired``: deletions first, so a
    moved address or MAC never collides with its old entry, then modifications, then additions."""
    operations = _range_operations(current["ranges"], desired["ranges"], parent_index) + \
        _host_operations(current["hosts"], desired["hosts"], parent_index)
    order = {libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE: 0, libvirt.VIR_NETWORK_UPDATE_COMMAND_MODIFY: 1,
             libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST: 2}
    return sorted(operations, key=lambda operation: order[operation.command])  # stable


def _range_operations(current, desired, parent_index):
    # libvirt cannot modify a range ("only added or deleted")
    section = libvirt.VIR_NETWORK_SECTION_IP_DHCP_RANGE
    return [_adding(section, range_element(item), parent_index) for item in desired if item not in current] + \
        [_deleting(section, range_element(item), parent_index) for item in current if item not in desired]


def _adding(section, element, parent_index):
    return DhcpOperation(libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, section, element, parent_index,
                         libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, element)


def _deleting(section, element, parent_index):
    return DhcpOperation(libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, section, element, parent_index,
                         libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, element)


def _host_operations(current, desired, parent_index):
    section = libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST
    operations = []
    kept = [host for host in current if host in desired]
    changed = []
    for host in current:
        if host not in desired:
            replacement = _same_guest(host, desired, kept)
            if replacement is None:
                operations.append(_deleting(section, host_element(host), parent_index))
            else:
                changed.append((host, replacement))
    # ``entries`` follows the host list as libvirt will have it, entry by entry
    entries = kept + [old for old, _new in changed]
    for old, new in changed:
        entries.remove(old)
        if _modify_is_unambiguous(new, entries):
            # libvirt modifies the first entry matching the new MAC, IP or name: here only the old one can
            operations.append(DhcpOperation(libvirt.VIR_NETWORK_UPDATE_COMMAND_MODIFY, section, host_element(new),
                                            parent_index, libvirt.VIR_NETWORK_UPDATE_COMMAND_MODIFY,
                                            host_element(old)))
        else:
            operations.append(_deleting(section, host_element(old), parent_index))
            operations.append(_adding(section, host_element(new), parent_index))
        entries.append(new)
    operations.extend(_adding(section, host_element(host), parent_index) for host in desired if host not in entries)
    return operations


def _same_guest(host, desired_hosts, taken):
    """The desired entry for the same guest (same MAC, or same name when there is no MAC)."""
    for candidate in desired_hosts:
        if candidate in taken:
            continue
        if (host["mac"] and candidate["mac"] == host["mac"]) or \
                (not host["mac"] and not candidate["mac"] and candidate["name"] == host["name"]):
            return candidate
    return None


def _modify_is_unambiguous(new, others):
    return not any((new["mac"] and other["mac"] == new["mac"]) or other["ip"] == new["ip"]
                   or (new["name"] and other["name"] == new["name"]) for other in others)


def merge_operations(config_operations, live_operations):
    """One call with both flags for an update both definitions need, else one call each."""
    live, config = libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE, libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
    merged = []
    live_by_key = {operation.key: operation for operation in live_operations}
    for operation in config_operations:
        operation.flags = config
        if live_by_key.pop(operation.key, None) is not None:
            operation.flags |= live
        merged.append(operation)
    for operation in live_operations:
        if operation.key in live_by_key:
            operation.flags = live
            merged.append(operation)
    order = {libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE: 0, libvirt.VIR_NETWORK_UPDATE_COMMAND_MODIFY: 1,
             libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST: 2}
    return sorted(merged, key=lambda operation: order[operation.command])  # stable: keeps each list's order


# ---------------------------------------------------------------- plan and apply


class Step:
    """One change: ``action`` says it for the result (None: bookkeeping only)."""

    def __init__(self, action, operation, run, undo=None):
        self.action = action
        self.operation = operation
        self.run = run
        self.undo = undo


class Plan:
    """Everything one run does to one network, decided before anything is changed."""

    def __init__(self, conn, name, before, after, steps, restart_required=False, restarting=False):
        self.conn = conn
        self.name = name
        self.before = before
        self.after = after
        self.steps = steps
        self.restart_required = restart_required
        self.restarting = restarting

    @property
    def changed(self):
        return any(step.action for step in self.steps)

    @property
    def actions(self):
        return [step.action for step in self.steps if step.action]

    def diff(self):
        return resource_diff(self.before, self.after)

    def apply(self):
        """Run the steps; when one fails, undo the ones before it (latest first) and raise."""
        done = []
        for step in self.steps:
            try:
                with self.conn.operation(step.operation):
                    step.run()
            except LibvirtOperationError as error:
                raise LibvirtOperationError(self.conn.uri, error.operation,
                                            error.detail + self._undo(done), error.code) from error
            done.append(step)

    def _undo(self, done):
        if not any(step.action for step in done):
            return "; nothing had been changed"
        failures = []
        for step in reversed(done):
            if step.undo is None:
                continue
            try:
                with self.conn.operation("undo: " + step.operation):
                    step.undo()
            except LibvirtOperationError as error:
                failures.append(str(error))
        if failures:
            return "; undoing the changes made before it failed too, network %s may be half-changed: %s" % (
                self.name, " / ".join(failures))
        return "; the changes made before it were undone (%s)" % ", ".join(
            step.action for step in done if step.action)


def view(definition, active, autostart, restart_pending):
    """The diff view of a network: its definition and run state."""
    if definition is None:
        return None
    shown = copy.deepcopy(definition)
    shown.update(active=active, autostart=autostart, restart_pending=restart_pending)
    return shown


def plan_network(conn, request, current):
    """The Plan for ``request`` against ``current`` (a CurrentNetwork or None); nothing is changed."""
    if request["state"] == "absent":
        return _plan_absent(conn, request["name"], current)
    desired = desired_definition(request["name"], request["definition"], current)
    if desired["mode"] == "bridge" and desired["bridge"] and request["active"]:
        check_host_bridge(conn, desired["bridge"])
    if current is None:
        return _plan_new(conn, request, desired)
    return _plan_existing(conn, request, desired, current)


def check_host_bridge(conn, bridge):
    """NetworkError when the hypervisor says the host bridge does not exist. libvirt itself
    starts a bridge-mode network over a missing bridge and only guests fail later."""
    with conn.operation("look up host interface %s" % bridge):
        try:
            conn.handle.interfaceLookupByName(bridge)
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_INTERFACE:
                raise NetworkError("bridge: the host bridge %r does not exist on %s; create it first (mode bridge "
                                   "connects guests to an existing bridge)" % (bridge, conn.uri)) from None
            if error.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED):
                raise
            # no interface driver on that host: libvirt cannot tell, so neither can we


def _plan_absent(conn, name, current):
    if current is None:
        return Plan(conn, name, None, None, [])
    handle = current.handle
    steps = [_power_guard(conn, current)]
    if current.active:
        steps.append(Step("stop", "stop network %s" % name, handle.destroy))
    if current.persistent:
        steps.append(Step("undefine", "undefine network %s" % name, handle.undefine,
                          undo=lambda: conn.handle.networkDefineXML(current.config_xml)))
    before = view(current.config, current.active, current.autostart, _pending(current))
    return Plan(conn, name, before, None, steps)


def _power_guard(conn, current):
    """Bookkeeping step whose undo, run last, puts the network back to running or stopped."""
    def restore():
        handle = find_network(conn, current.handle.name())
        if current.active and (handle is None or not handle.isActive()):
            if handle is None:
                conn.handle.networkCreateXML(current.live_xml)
            else:
                handle.create()
        elif not current.active and handle is not None and handle.isActive():
            handle.destroy()
    return Step(None, "put network %s back to %s" % (current.handle.name(), "running" if current.active else "stopped"),
                lambda: None, undo=restore)


def _pending(current):
    return bool(current.active and current.live != current.config)


def _plan_new(conn, request, desired):
    name = request["name"]
    root = write_definition(ElementTree.Element("network"), desired)
    state = {}

    def define():
        state["handle"] = conn.handle.networkDefineXML(to_xml(root))

    def undefine():
        handle = state["handle"]
        if handle.isActive():
            handle.destroy()
        handle.undefine()

    steps = [Step("define", "define network %s" % name, define, undo=undefine)]
    if request["autostart"]:
        steps.append(Step("autostart on", "turn on autostart of network %s" % name,
                          lambda: state["handle"].setAutostart(1)))
    if request["active"]:
        # a lambda, not state["handle"].create: the handle exists only once "define" has run
        steps.append(Step("start", "start network %s" % name,
                          lambda: state["handle"].create()))  # pylint: disable=unnecessary-lambda
    after = view(desired, bool(request["active"]), bool(request["autostart"]), False)
    return Plan(conn, name, None, after, steps)


def _plan_existing(conn, request, desired, current):
    name = request["name"]
    live_differs = current.active and request["active"] and current.live != desired
    live_dhcp_only = live_differs and differs_only_in_dhcp(current.live, desired)
    restart = live_differs and not live_dhcp_only and request["restart"] == "if_needed"
    restart_required = live_differs and not live_dhcp_only and not restart
    steps = [_power_guard(conn, current)]
    steps.extend(_definition_steps(conn, current, desired, live_dhcp_only))
    steps.extend(_autostart_steps(current, request["autostart"]))
    steps.extend(_power_steps(name, current.handle, current.active, request["active"], restart))
    autostart = current.autostart if request["autostart"] is None else bool(request["autostart"])
    before = view(current.config, current.active, current.autostart, _pending(current))
    after = view(desired, bool(request["active"]), autostart, restart_required)
    return Plan(conn, name, before, after, steps, restart_required=restart_required, restarting=restart)


def _definition_steps(conn, current, desired, live_dhcp_only):
    """A new persistent definition when it changes beyond DHCP, else DHCP updates of it; and
    DHCP updates of the running network when that is all it lacks."""
    name, steps = current.handle.name(), []
    config_operations = live_operations = []
    if not current.persistent or (current.config != desired and not differs_only_in_dhcp(current.config, desired)):
        root = write_definition(copy.deepcopy(current.config_root), desired)
        steps.append(Step("define", "redefine network %s" % name, lambda: conn.handle.networkDefineXML(to_xml(root)),
                          undo=_undo_define(conn, current)))
    elif current.config != desired:
        config_operations = dhcp_operations(current.config["dhcp"], desired["dhcp"],
                                            ipv4_element(current.config_root)[1])
    if live_dhcp_only:
        live_operations = dhcp_operations(current.live["dhcp"], desired["dhcp"], ipv4_element(current.live_root)[1])
    steps.extend(_update_step(name, current.handle, operation)
                 for operation in merge_operations(config_operations, live_operations))
    return steps


def _autostart_steps(current, autostart):
    if autostart is None or bool(autostart) == current.autostart:
        return []
    value, word = (1, "on") if autostart else (0, "off")
    handle = current.handle
    return [Step("autostart %s" % word, "turn %s autostart of network %s" % (word, handle.name()),
                 lambda: handle.setAutostart(value), undo=lambda: handle.setAutostart(1 - value))]


def _undo_define(conn, current):
    if current.persistent:
        return lambda: conn.handle.networkDefineXML(current.config_xml)
    return lambda: find_network(conn, current.handle.name()).undefine()  # back to transient


def _update_step(name, handle, operation):
    def run():
        handle.update(operation.command, operation.section, operation.parent_index, to_xml(operation.element),
                      operation.flags)

    def undo():
        handle.update(operation.undo_command, operation.section, operation.parent_index,
                      to_xml(operation.undo_element), operation.flags)

    description = operation.describe()
    return Step(description, "%s of network %s" % (description, name), run, undo=undo)


def _power_steps(name, handle, active, want_active, restart):
    if want_active and not active:
        return [Step("start", "start network %s" % name, handle.create)]
    if active and not want_active:
        return [Step("stop", "stop network %s" % name, handle.destroy)]
    if restart:
        return [Step("stop for restart", "stop network %s to restart it" % name, handle.destroy),
                Step("start", "start network %s with its new definition" % name, handle.create)]
    return []


def ensure_network(conn, request, check_mode=False):
    """Make the network match ``request``; returns the module result (changed, diff,
    network facts, restart_required, restarted, actions, warnings)."""
    current = read_network(conn, request["name"])
    plan = plan_network(conn, request, current)
    if not check_mode:
        plan.apply()
    facts = _facts_after(conn, request, plan, current, check_mode)
    warnings = []
    if plan.restarting and plan.changed:
        warnings.append("network %s was restarted: guest interfaces on it were detached from its bridge and "
                        "lost connectivity; libvirt re-attaches them only when libvirtd restarts or the "
                        "interface is re-plugged" % request["name"])
    elif plan.restart_required:
        warnings.append("network %s runs with an older definition (%s); it takes effect when the network "
                        "restarts (restart: if_needed), which disconnects its guests"
                        % (request["name"], ", ".join(_changed_fields(current.live, plan.after))))
    return dict(changed=plan.changed, diff=plan.diff(), network=facts, restart_required=plan.restart_required,
                restarted=plan.restarting and plan.changed, actions=plan.actions, warnings=warnings)


def _changed_fields(live, after):
    return sorted(key for key in live if live[key] != after.get(key))


def _facts_after(conn, request, plan, current, check_mode):
    if request["state"] == "absent":
        return None
    if not check_mode:
        return network_facts(read_network(conn, request["name"]))
    facts = {key: value for key, value in plan.after.items() if key != "restart_pending"}
    facts.update(uuid=current.uuid if current is not None else None, persistent=True)
    return facts
