"""The kvmops.virt lab: several real libvirt/QEMU hypervisors on one machine.

``Lab`` is what the Makefile (through ``python -m lab``), the demo and the tests use.
"""

import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import libvirt

from .connection import LibvirtOperationError, open_lab_connection
from .guests import LabError, create_guest, ensure_event_loop, find_guest, remove_guest, set_load
from .hosts import LabHost, NetworkLabHost, ensure_system_prerequisites
from .image import ensure_image
from .inventory import write_inventory
from .layout import (DEFAULT_HOSTS, TRANSPORTS, HostSpec, LabLayout, NetworkHostSpec, host_from_name, host_uri,
                     network_host_from_name)
from .pki import client_pkipath
from .ssh import LabSsh
from .status import collect, render

__all__ = ["Lab", "LabError", "LibvirtOperationError", "DEFAULT_HOSTS"]


def _start(host, log):
    t0 = time.monotonic()
    if host.start():
        log(f"{host.spec.name} started: {host.spec.uri} pid {host.pid()} ({time.monotonic() - t0:.1f} s)")
        return True
    log(f"{host.spec.name} already running: {host.spec.uri} pid {host.pid()}")
    return False


def _ignore_libvirt_error(_context, _error):
    """libvirt prints every error on stderr by default; the lab reports its own."""


class Lab:
    def __init__(self, root=None):
        self.layout = LabLayout(root)
        libvirt.registerErrorHandler(_ignore_libvirt_error, None)
        ensure_event_loop()

    def host(self, name_or_spec):
        spec = name_or_spec if isinstance(name_or_spec, HostSpec) else host_from_name(name_or_spec)
        return LabHost(spec, self.layout)

    def hosts(self):
        """Every host the lab has files for, running or not."""
        return [LabHost(spec, self.layout) for spec in self.layout.known_hosts()]

    def running_hosts(self):
        return [host for host in self.hosts() if host.is_running()]

    def network_host(self, name_or_index=1):
        """The private-network host kvmnet<N> (by name, index or spec), running or not."""
        if isinstance(name_or_index, NetworkHostSpec):
            spec = name_or_index
        elif isinstance(name_or_index, int):
            spec = self.layout.network_host_spec(name_or_index)
        else:
            spec = network_host_from_name(name_or_index, self.layout.root)
        return NetworkLabHost(spec, self.layout)

    def network_hosts(self):
        """Every private-network host the lab has files for, running or not. They are not
        among hosts(): no TCP address, so not in the inventory nor in migrations."""
        return [NetworkLabHost(spec, self.layout) for spec in self.layout.known_network_hosts()]

    def up(self, count=DEFAULT_HOSTS, log=print, network_hosts=0):
        """Make hosts kvm1..kvm<count> (and kvmnet1..kvmnet<network_hosts>) run and the guest
        image exist. Harmless when already up."""
        ensure_system_prerequisites()
        started = time.monotonic()
        ensure_image(self.layout)
        log(f"guest image ready in {time.monotonic() - started:.1f} s ({self.layout.image_dir})")
        self.prepare_trust([LabHost(HostSpec(index), self.layout) for index in range(1, count + 1)])
        for index in range(1, count + 1):
            _start(LabHost(HostSpec(index), self.layout), log)
        for index in range(1, network_hosts + 1):
            _start(self.network_host(index), log)
        # the inventory tells playbooks to log guest consoles there: QEMU creates files, not directories
        self.layout.guests_dir.mkdir(parents=True, exist_ok=True)
        self.write_inventory()
        log(f"inventory: {self.layout.inventory_path}")

    def start_network_host(self, index=1, log=print):
        """Start kvmnet<index> alone (no image, no kvm hosts); returns (host, started)."""
        ensure_system_prerequisites()
        host = self.network_host(index)
        return host, _start(host, log)

    @property
    def ssh(self):
        return LabSsh(self.layout)

    def prepare_trust(self, new_hosts=()):
        """Keys, certificates and who trusts whom for these hosts and every host there is:
        the known hosts and authorized keys of ssh, the controller's ssh configuration for
        the lab's addresses, the CA and the controller's TLS client certificate."""
        hosts = {host.spec.name: host for host in self.hosts() + list(new_hosts)}
        hosts = [hosts[name] for name in sorted(hosts, key=lambda name: host_from_name(name).index)]
        for host in hosts:
            host.write_ssh_config()
        self.ssh.write_trust(hosts)
        self.ssh.write_controller_config([host.spec.address for host in hosts])
        if hosts:
            hosts[0].write_certificates()  # makes the CA when there is none
        client_pkipath(self.layout.root / "pki" / "ca", self.layout.controller_pki, "kvmops-lab-controller")

    @staticmethod
    def transport(transport=None):
        """The transport asked for, else LAB_TRANSPORT, else tcp."""
        transport = transport or os.environ.get("LAB_TRANSPORT") or "tcp"
        if transport not in TRANSPORTS:
            raise LabError(f"LAB_TRANSPORT must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
        return transport

    def uri(self, host_name, transport=None):
        """The URI of a lab host over a transport (default: LAB_TRANSPORT, else tcp)."""
        return host_uri(host_from_name(host_name), self.transport(transport), self.layout)

    def write_inventory(self, path=None, transport=None):
        """The lab inventory (default: the lab's own file, over LAB_TRANSPORT); returns its path."""
        path = path or self.layout.inventory_path
        write_inventory(path, [host.spec for host in self.running_hosts()], self.layout, self.transport(transport))
        return path

    def down(self, log=print):
        """Stop every host (guests, daemons and anything left in their namespaces)."""
        for host in self.hosts() + self.network_hosts():
            was_running = host.is_running()
            swept = host.stop()
            if was_running or swept:
                extra = f", killed leftovers {swept}" if swept else ""
                log(f"{host.spec.name} stopped{extra}")
        self.layout.inventory_path.unlink(missing_ok=True)
        self.ssh.remove_controller_config()

    def leftovers(self):
        """PIDs still alive in any lab host's namespace (empty after a clean down)."""
        return {host.spec.name: pids for host in self.hosts() + self.network_hosts()
                if (pids := host.namespace_pids())}

    def status(self, seconds=1.0):
        return collect(self.hosts() + [host for host in self.network_hosts() if host.is_running()], seconds)

    def render_status(self, seconds=1.0):
        return render(self.status(seconds))

    @contextmanager
    def connections(self):
        """name -> open connection for every running host, all closed when the block ends."""
        conns = {}
        try:
            for host in self.running_hosts():
                conns[host.spec.name] = open_lab_connection(host.spec.uri)
            yield conns
        finally:
            for conn in conns.values():
                conn.close()

    def create_guest(self, name, host_name, vcpus=1, memory_mib=256, load=0, agent=False, max_vcpus=None):
        host_from_name(host_name)  # ValueError naming the expected form for "hostA" and the like
        vmlinuz, initrd = ensure_image(self.layout)
        with self.connections() as conns:
            existing = find_guest(conns, name)
            if existing:
                raise LabError(f"guest {name} already exists on {', '.join(host for host, _dom in existing)}")
            if host_name not in conns:
                raise LabError(f"lab host {host_name} is not running")
            create_guest(conns[host_name], name, self.layout, vmlinuz, initrd, vcpus, memory_mib, load, agent=agent,
                         max_vcpus=max_vcpus)

    def create_guests(self, placement, **options):
        """create_guest for each {name: host} at once: they boot in parallel, which takes about
        half the time on two cores. All or none: when one fails, the others are removed."""
        with ThreadPoolExecutor(max_workers=max(1, len(placement))) as pool:
            futures = {name: pool.submit(self.create_guest, name, host, **options) for name, host in placement.items()}
        errors = {name: future.exception() for name, future in futures.items()}
        failed = [name for name, error in errors.items() if error is not None]
        if failed:
            # a failed creation removed its own guest, or found one that is not ours to remove
            for name in placement:
                if name not in failed:
                    self.remove_guest_if_defined(name)
            raise errors[failed[0]]
        return list(placement)

    def _on_each_copy(self, name, action):
        with self.connections() as conns:
            found = find_guest(conns, name)
            if not found:
                raise LabError(f"no lab host has a guest named {name}")
            return [(host_name, action(dom)) for host_name, dom in found]

    def set_load(self, name, load=None, dirty=None):
        """Set load on the running copy of the guest; returns (host, (load, dirty))."""
        def apply(dom):
            return set_load(dom, load, dirty) if dom.isActive() else None
        applied = [(host, result) for host, result in self._on_each_copy(name, apply) if result]
        if not applied:
            raise LabError(f"guest {name} is not running on any lab host")
        return applied[0]

    def remove_guest(self, name):
        """Destroy and undefine the guest on every host; returns those hosts."""
        return [host for host, _dom in self._on_each_copy(name, remove_guest)]

    def remove_guest_if_defined(self, name):
        try:
            return self.remove_guest(name)
        except LabError:
            return []
