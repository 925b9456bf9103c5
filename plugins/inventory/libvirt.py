# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: libvirt
short_description: One inventory of many KVM hypervisors and all their guests
version_added: 0.1.0
description:
  - Lists every hypervisor of O(hypervisors) (or of the inventory group named by
    O(hypervisors_from)) and every guest on them, talking to all hypervisors at once and to
    each with a handful of bulk calls, so a fleet of thousands of guests takes about a second.
  - Each guest becomes a host with variables under O(prefix) (state, vCPUs, memory, disks,
    NICs with their DHCP addresses, tags, hypervisor and its URI, CPU use when sampled), in
    groups C(kvm_guests), C(kvm_on_<hypervisor>), C(kvm_state_<state>) and
    C(kvm_tag_<tag>_<value>); each hypervisor becomes a host in C(kvm_hypervisors) with its
    capacity, allocation and maintenance mark, and in C(kvm_maintenance) while it has one.
  - "Guest variables: C(kvm_name), C(kvm_uuid), C(kvm_state), C(kvm_vcpus), C(kvm_memory)
    (bytes), C(kvm_hypervisor), C(kvm_uri) (the hypervisor's libvirt URI, for the modules'
    O(ignore:uri) option), C(kvm_tags), C(kvm_disks) (C(target), C(path)), C(kvm_interfaces)
    (C(mac), C(source) network or bridge, C(address) IPv4), C(kvm_cpu_time) (ns, running
    guests), C(kvm_cpu_cores) and C(kvm_cpu_percent) (with O(sample_seconds)),
    C(kvm_last_migrated) (epoch seconds, for guests moved by P(kvmops.virt.migrate#module)),
    C(kvm_agent) (with O(want_agent_info)), and C(ansible_host) when an address is known."
  - "Hypervisor variables: C(kvm_uri), C(kvm_reachable) (and C(kvm_error)), C(kvm_hostname),
    C(kvm_host_uuid), C(kvm_driver), C(kvm_arch), C(kvm_logical_cpus), C(kvm_memory_total),
    C(kvm_memory_free), C(kvm_guests_defined), C(kvm_guests_running), C(kvm_vcpus_allocated),
    C(kvm_memory_allocated) (bytes, running guests), C(kvm_maintenance) (true or false) and
    C(kvm_maintenance_mark) (C(since), C(reason), C(by), or null)."
  - The variables are kept few on purpose - each costs time and memory for every guest in
    C(ansible-inventory) and every play; O(want_details) adds the rest of what libvirt says.
  - A hypervisor that cannot be reached is reported in a warning and as C(kvm_reachable=false)
    on its host; the rest of the fleet is listed. With O(strict=true) it is an error.
  - A guest is never merged into another host. A guest whose host name is a hypervisor's, a
    host's of the inventory, the controller's (C(localhost), its host names) or an IP address
    (its tenant chooses it) is listed as C(<name>@<hypervisor>) with a warning; if that name is
    taken too, it is left out, with a warning.
  - Strings that come from guests (names, tags, descriptions) are marked unsafe, so they are
    never templated.
  - The configuration file must end in C(.kvmops.yml), C(.kvmops.yaml), C(.libvirt.yml) or C(.libvirt.yaml).
author:
  - kvmops.virt developers (@kvmops)
requirements:
  - libvirt-python
  - jmespath (only for O(query))
extends_documentation_fragment:
  - constructed
  - inventory_cache
options:
  plugin:
    description: The name of this plugin.
    type: str
    required: true
    choices: [kvmops.virt.libvirt]
  hypervisors:
    description:
      - The hypervisors, each with a C(name) (its inventory host name), a libvirt C(uri), and
        optional C(vars) set on its inventory host.
    type: list
    elements: dict
    default: []
  hypervisors_from:
    description:
      - Take the hypervisors from an existing inventory instead (or as well), for example the
        lab's C(.lab/inventory.yml) or a static inventory of hypervisors. Every host of
        C(group) that has the variable C(uri_var) becomes a hypervisor of that name.
    type: dict
    suboptions:
      inventory:
        description: Path of the inventory file (relative to this configuration file).
        type: path
        required: true
      group:
        description: Group whose hosts are the hypervisors.
        type: str
        default: kvm_hypervisors
      uri_var:
        description: Variable holding each host's libvirt URI.
        type: str
        default: libvirt_uri
  username:
    description: User name for hypervisors that ask for credentials (SASL).
    type: str
    env:
      - name: KVMOPS_LIBVIRT_USERNAME
  password:
    description: Password for hypervisors that ask for credentials; never shown.
    type: str
    env:
      - name: KVMOPS_LIBVIRT_PASSWORD
  connect_timeout:
    description: Seconds to wait for each hypervisor; one that does not answer costs at most this.
    type: float
    default: 10
  max_workers:
    description: How many hypervisors are asked at the same time.
    type: int
    default: 16
  prefix:
    description: Prefix of every variable the plugin sets.
    type: str
    default: kvm_
  guest_name_format:
    description:
      - Inventory host name of a guest, a Python format string with the fields C(name),
        C(uuid) and C(hypervisor).
      - When two different guests (different UUIDs) get the same host name, both are
        named C(<name>@<hypervisor>) instead and a warning says so. The same guest seen on
        two hypervisors (in the middle of a live migration) is listed once, where it runs.
    type: str
    default: "{name}"
  timeout:
    description:
      - Seconds one hypervisor may take in all (connecting, listing, reading); one that has
        not answered by then is reported unreachable like one that is down, and the rest of
        the fleet is listed.
    type: float
    default: 120
  want_addresses:
    description: Read the DHCP leases of the hypervisors' networks to give NICs their IPv4 address and guests C(ansible_host).
    type: bool
    default: true
  want_details:
    description:
      - Also set C(kvm_max_vcpus), C(kvm_max_memory), C(kvm_virt_type), C(kvm_arch) and
        C(kvm_machine), and give disks C(device), C(bus), C(format), C(readonly) and NICs
        C(type) and C(model).
      - They are always available to O(query).
    type: bool
    default: false
  sample_seconds:
    description:
      - Measure each running guest's CPU use over this many seconds (the hypervisors are
        sampled in parallel, while their guests' definitions are read) and set
        C(kvm_cpu_cores) (cores busy on average) and C(kvm_cpu_percent) (of its vCPUs).
      - C(0) does not sample.
    type: float
    default: 0
  want_agent_info:
    description:
      - Ask the QEMU guest agent of each running guest whose agent channel is connected for
        its host name, OS and interface addresses (C(kvm_agent), NIC C(addresses)). Guests
        without an agent, or not running, are not asked and cause no warning.
      - What an agent reports is the guest's own word. It never becomes NIC C(address) or
        C(ansible_host) unless O(agent_address_as_host) says so.
      - Agent calls need a read-write connection to the hypervisors (libvirt refuses them on
        a read-only one); without this option the plugin connects read-only.
    type: bool
    default: false
  agent_address_as_host:
    description:
      - With O(want_agent_info), give a guest that has no DHCP lease the first IPv4 address
        its agent reports as C(ansible_host).
      - B(The guest controls that address.) A compromised guest can send Ansible, and the
        credentials it connects with, to any address it likes. Turn this on only for guests
        whose owners you trust as much as the controller.
    type: bool
    default: false
  agent_timeout:
    description:
      - Seconds after which no more guest agents of a hypervisor are asked (an agent asked
        just before may still take libvirt's own agent timeout to answer).
    type: float
    default: 3
  query:
    description:
      - A JMESPath expression over the list of guest records (the guest variables without
        prefix, with every detail of O(want_details)); only the guests it returns become
        hosts. See EXAMPLES.
    type: str
"""

EXAMPLES = r"""
# fleet.kvmops.yml: three hypervisors over SSH
plugin: kvmops.virt.libvirt
hypervisors:
  - name: kvm1
    uri: qemu+ssh://root@kvm1.example.com/system
  - name: kvm2
    uri: qemu+ssh://root@kvm2.example.com/system
    vars:
      rack: b12
keyed_groups:
  - key: kvm_tags.env | default('none')
    prefix: env
compose:
  ansible_user: "'cloud'"

# lab.kvmops.yml: the hypervisors of the lab's inventory, cached for an hour
plugin: kvmops.virt.libvirt
hypervisors_from:
  inventory: .lab/inventory.yml
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/kvmops-inventory
cache_timeout: 3600

# Ready queries (option query):
#   running production guests:        "[?state=='running' && tags.env=='prod']"
#   guests of one hypervisor:         "[?hypervisor=='kvm1']"
#   stopped guests (to clean up):     "[?state=='stopped']"
#   big guests:                       "[?vcpus >= `8` || memory >= `17179869184`]"
#   guests that must not move:        "[?tags.migratable == `false`]"
#   guests without an IP address yet: "[?!(interfaces[?address])]"
#   busy guests (with sample_seconds): "[?cpu_percent > `80`]"
#   guests on a disk of one pool dir:  "[?disks[?starts_with(path || '', '/srv/fast/')]]"

# busy.kvmops.yml: running guests with their CPU use over 5 seconds and agent data,
# grouped by how busy they are
plugin: kvmops.virt.libvirt
hypervisors_from:
  inventory: hypervisors.yml
sample_seconds: 5
want_agent_info: true
query: "[?state=='running']"
keyed_groups:
  - key: "'busy' if kvm_cpu_percent > 80 else 'calm'"
    prefix: cpu
"""

import collections
import os
import socket

from ansible.errors import AnsibleError, AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
try:
    # ansible-core 2.19 and later never template inventory strings unless a plugin marks
    # them trusted, and would print wrapped ones as {"__ansible_unsafe": ...}
    from ansible.template import trust_as_template  # noqa: F401  pylint: disable=unused-import
except ImportError:
    from ansible.utils.unsafe_proxy import wrap_var as untrusted
else:
    def untrusted(value):
        return value

from ansible_collections.kvmops.virt.plugins.module_utils.guest_agent import host_address
from ansible_collections.kvmops.virt.plugins.module_utils.host_names import is_address, names_the_controller_or_an_address

try:
    from ansible_collections.kvmops.virt.plugins.module_utils.fleet import gather_fleet
except ImportError as error:  # libvirt-python is missing: say so when the plugin is used
    gather_fleet = None
    FLEET_IMPORT_ERROR = error
else:
    FLEET_IMPORT_ERROR = None

try:
    import jmespath
except ImportError:
    jmespath = None

CONFIG_SUFFIXES = (".kvmops.yml", ".kvmops.yaml", ".libvirt.yml", ".libvirt.yaml")
# Guest record keys that become variables: always, only when sampled/asked, with want_details.
GUEST_VARS = ("name", "uuid", "state", "vcpus", "memory", "hypervisor")
GUEST_MEASURED_VARS = ("cpu_time", "cpu_cores", "cpu_percent", "last_migrated", "agent")
GUEST_DETAIL_VARS = ("max_vcpus", "max_memory", "virt_type", "arch", "machine")
DISK_KEYS = ("target", "path")
DISK_DETAIL_KEYS = ("device", "bus", "format", "readonly")
NIC_KEYS = ("mac", "source", "address")
NIC_DETAIL_KEYS = ("type", "model")
HOST_VARS = ("hostname", "host_uuid", "driver", "arch", "logical_cpus", "memory_total", "memory_free",
             "guests_defined", "guests_running", "vcpus_allocated", "memory_allocated")
_STATE_PREFERENCE = {"running": 0, "paused": 1, "stopping": 2}


def controller_names():
    """This controller's own host names (short and long), lower case."""
    names = set()
    for name in (socket.gethostname(), socket.getfqdn()):
        if name:
            names.update((name.lower(), name.split(".", 1)[0].lower()))
    return names


def shadows_a_host(name, taken, controller):
    """Why a guest must not be listed as host ``name``, or None: a guest (whose name its
    tenant chooses) named like a hypervisor, a host of the inventory, the controller or an
    IP address would be merged into that host, or send Ansible to that address."""
    if name in taken:
        return "a host of the inventory (a hypervisor, or from another source)"
    if is_address(name):
        return "an IP address"
    if names_the_controller_or_an_address(name, controller):
        return "the controller"
    return None


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "kvmops.virt.libvirt"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(CONFIG_SUFFIXES)

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        if gather_fleet is None:
            raise AnsibleError("kvmops.virt.libvirt needs the Python library libvirt-python: %s" % FLEET_IMPORT_ERROR)
        hypervisors = self._hypervisors(path)
        cache_key = self.get_cache_key(path)
        use_cache = self.get_option("cache") and cache
        fleet = None
        if use_cache:
            try:
                fleet = self._cache[cache_key]
            except KeyError:
                fleet = None
        if fleet is None:
            fleet = gather_fleet(hypervisors, self._connection_options(), self.get_option("max_workers"),
                                 want_addresses=self.get_option("want_addresses"),
                                 sample_seconds=self.get_option("sample_seconds"),
                                 want_agent=self.get_option("want_agent_info"),
                                 agent_timeout=self.get_option("agent_timeout"), timeout=self.get_option("timeout"))
            if self.get_option("cache") and all(hypervisor["reachable"] for hypervisor in fleet):
                self._cache[cache_key] = fleet  # a partial fleet is never cached
        self._populate(fleet, hypervisors)

    # ------------------------------------------------------------ configuration

    def _connection_options(self):
        return dict(username=self.get_option("username"), password=self.get_option("password"),
                    connect_timeout=self.get_option("connect_timeout"))

    def _hypervisors(self, path):
        hypervisors = []
        for index, entry in enumerate(self.get_option("hypervisors") or []):
            if not isinstance(entry, dict) or not entry.get("name") or not entry.get("uri"):
                raise AnsibleParserError("%s: hypervisors[%d] needs a name and a uri" % (path, index))
            hypervisors.append(dict(name=str(entry["name"]), uri=str(entry["uri"]), vars=dict(entry.get("vars") or {})))
        source = self.get_option("hypervisors_from")
        if source:
            hypervisors.extend(self._hypervisors_from(path, source))
        names = [hypervisor["name"] for hypervisor in hypervisors]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise AnsibleParserError("%s: hypervisor names must be unique: %s" % (path, ", ".join(duplicates)))
        if not hypervisors:
            raise AnsibleParserError("%s: no hypervisors; give hypervisors or hypervisors_from" % path)
        return hypervisors

    def _hypervisors_from(self, path, source):
        from ansible.inventory.manager import InventoryManager  # pylint: disable=import-outside-toplevel
        inventory_path = source["inventory"]
        if not os.path.isabs(inventory_path):
            inventory_path = os.path.join(os.path.dirname(os.path.abspath(path)), inventory_path)
        if not os.path.exists(inventory_path):
            raise AnsibleParserError("%s: hypervisors_from: %s does not exist" % (path, inventory_path))
        group_name = source.get("group") or "kvm_hypervisors"
        uri_var = source.get("uri_var") or "libvirt_uri"
        other = InventoryManager(loader=self.loader, sources=[inventory_path])
        group = other.groups.get(group_name)
        if group is None:
            raise AnsibleParserError("%s: hypervisors_from: %s has no group %s" % (path, inventory_path, group_name))
        found = []
        for host in sorted(group.get_hosts(), key=lambda host: host.name):
            uri = host.get_vars().get(uri_var)
            if uri:
                found.append(dict(name=host.name, uri=str(uri), vars={}))
        return found

    # ------------------------------------------------------------ population

    def _populate(self, fleet, hypervisors):
        prefix = self.get_option("prefix")
        strict = self.get_option("strict")
        self._constructing = any(self.get_option(option) for option in ("compose", "groups", "keyed_groups"))
        self._variables = _variable_store(self.inventory)
        extra_vars = {hypervisor["name"]: hypervisor["vars"] for hypervisor in hypervisors}
        uris = {hypervisor["name"]: hypervisor["uri"] for hypervisor in fleet}
        for group in ("kvm_hypervisors", "kvm_maintenance", "kvm_guests"):
            self.inventory.add_group(group)
        for hypervisor in fleet:
            self._add_hypervisor(hypervisor, extra_vars.get(hypervisor["name"], {}), prefix, strict)
        guests = self._select(self._unique_guests(fleet))
        details = self.get_option("want_details")
        for host_name, guest in self._guest_host_names(guests):
            self._add_guest(host_name, guest_variables(guest, uris[guest["hypervisor"]], details), prefix, strict)

    def _add_hypervisor(self, hypervisor, extra, prefix, strict):
        name = hypervisor["name"]
        self.inventory.add_host(name, group="kvm_hypervisors")
        variables = {prefix + "uri": hypervisor["uri"], prefix + "reachable": hypervisor["reachable"]}
        if hypervisor["reachable"]:
            for key in HOST_VARS:
                variables[prefix + key] = hypervisor["host"][key]
            mark = hypervisor["host"].get("maintenance")
            variables[prefix + "maintenance"] = mark is not None
            variables[prefix + "maintenance_mark"] = mark
            if mark is not None:
                self.inventory.add_child("kvm_maintenance", name)
        else:
            message = "kvmops.virt.libvirt: hypervisor %s is unreachable, its guests are not listed: %s" % (
                name, hypervisor["error"])
            if strict:
                raise AnsibleError(message)
            self.display.warning(message)
            variables[prefix + "error"] = hypervisor["error"]
        variables.update(extra)
        for key, value in variables.items():
            self.inventory.set_variable(name, key, value)
        self._construct(name, strict)

    def _unique_guests(self, fleet):
        """Every guest once: the copy that runs when a migration shows it on two hypervisors."""
        by_uuid = {}
        for hypervisor in fleet:
            for guest in hypervisor["guests"]:
                known = by_uuid.get(guest["uuid"])
                if known is None or _STATE_PREFERENCE.get(guest["state"], 9) < _STATE_PREFERENCE.get(known["state"], 9):
                    by_uuid[guest["uuid"]] = guest
        return sorted(by_uuid.values(), key=lambda guest: (guest["name"], guest["hypervisor"]))

    def _select(self, guests):
        query = self.get_option("query")
        if not query:
            return guests
        if jmespath is None:
            raise AnsibleError("kvmops.virt.libvirt: the option query needs the Python library jmespath")
        try:
            selected = jmespath.search(query, guests)
        except jmespath.exceptions.JMESPathError as error:
            raise AnsibleParserError("kvmops.virt.libvirt: query %r: %s" % (query, error)) from None
        if not isinstance(selected, list) or not all(isinstance(item, dict) and "uuid" in item for item in selected):
            raise AnsibleParserError("kvmops.virt.libvirt: query %r must return a list of guest records "
                                     "(a filter such as [?state=='running'])" % query)
        wanted = {item["uuid"] for item in selected}
        return [guest for guest in guests if guest["uuid"] in wanted]

    def _guest_host_names(self, guests):
        name_format = self.get_option("guest_name_format")
        try:
            names = [name_format.format(name=guest["name"], uuid=guest["uuid"], hypervisor=guest["hypervisor"])
                     for guest in guests]
        except (KeyError, IndexError, ValueError) as error:
            raise AnsibleParserError("kvmops.virt.libvirt: guest_name_format %r: %s" % (name_format, error)) from None
        clashes = sorted(name for name, count in collections.Counter(names).items() if count > 1)
        if clashes:
            self.display.warning("kvmops.virt.libvirt: different guests share the host name(s) %s; they are listed "
                                 "as <name>@<hypervisor>" % ", ".join(clashes))
        taken = set(self.inventory.hosts)  # the hypervisors, and hosts of earlier inventory sources
        controller = controller_names()
        listed = []
        for name, guest in zip(names, guests):
            reason = shadows_a_host(name, taken, controller)
            if name in clashes or reason:
                renamed = "%s@%s" % (name, guest["hypervisor"])
                if reason:
                    self.display.warning("kvmops.virt.libvirt: guest %r on %s is named like %s; it is listed as %r"
                                         % (name, guest["hypervisor"], reason, renamed))
                name = renamed
            if name in taken:  # even the renamed form is taken: a guest named "kvm1@kvm2", say
                self.display.warning("kvmops.virt.libvirt: guest %r on %s is not listed: its host name is taken"
                                     % (guest["name"], guest["hypervisor"]))
                continue
            taken.add(name)
            listed.append((name, guest))
        return listed

    def _add_guest(self, host_name, variables, prefix, strict):
        self.inventory.add_host(host_name, group="kvm_guests")
        for group in ("kvm_on_" + variables["hypervisor"], "kvm_state_" + variables["state"]):
            self.inventory.add_child(self.inventory.add_group(self._sanitize_group_name(group)), host_name)
        for tag, value in sorted(variables["tags"].items()):
            group = self._sanitize_group_name("kvm_tag_%s_%s" % (tag, value))
            self.inventory.add_child(self.inventory.add_group(group), host_name)
        for key, value in variables.items():
            self._variables.set_variable(host_name, prefix + key, untrusted(value))
        address = host_address(variables["interfaces"], trust_agent=self.get_option("agent_address_as_host"))
        if address:
            self._variables.set_variable(host_name, "ansible_host", untrusted(address))
        self._construct(host_name, strict)

    def _construct(self, host_name, strict):
        if not self._constructing:
            return  # the templating below costs a few hundred microseconds a host, for nothing
        host_vars = self.inventory.get_host(host_name).get_vars()
        self._set_composite_vars(self.get_option("compose"), host_vars, host_name, strict=strict)
        host_vars = self.inventory.get_host(host_name).get_vars()
        self._add_host_to_composed_groups(self.get_option("groups"), host_vars, host_name, strict=strict)
        self._add_host_to_keyed_groups(self.get_option("keyed_groups"), host_vars, host_name, strict=strict)


def guest_variables(guest, uri, details=False):
    """The variables (without prefix) of one guest record of the fleet snapshot: fresh
    plain data, shared with nothing."""
    variables = {key: guest.get(key) for key in GUEST_VARS}
    variables.update(uri=uri, tags=dict(guest.get("tags") or {}))
    disk_keys = DISK_KEYS + (DISK_DETAIL_KEYS if details else ())
    nic_keys = NIC_KEYS + (NIC_DETAIL_KEYS if details else ()) + (("addresses",) if "agent" in guest else ())
    variables["disks"] = [{key: disk.get(key) for key in disk_keys} for disk in guest.get("disks") or []]
    variables["interfaces"] = [{key: (list(nic.get(key) or []) if key == "addresses" else nic.get(key)) for key in nic_keys}
                               for nic in guest.get("interfaces") or []]
    for key in GUEST_MEASURED_VARS:
        if guest.get(key) is not None:
            variables[key] = guest[key]
    if details:
        variables.update((key, guest.get(key)) for key in GUEST_DETAIL_VARS)
    return variables


def _variable_store(inventory):
    """Where the plugin sets its variables.

    ansible-core 2.19 hands inventory plugins a proxy whose set_variable deep-copies every
    value, tagging each string, number and container with its origin, to protect data a
    plugin might still change and to mark trust for plugins that predate it. Here each
    value is built fresh for the one host and is plain JSON data whose strings are meant to
    stay untrusted, which is what an untagged string is; the copy only costs: measured at
    25,000 guests it was a third of the time the plugin spent and 170 MiB. So variables go
    to the proxied inventory itself; groups, hosts and composed variables still go through
    the proxy."""
    return getattr(inventory, "__wrapped__", inventory)
