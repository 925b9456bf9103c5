"""A benchmark fleet: many libvirtd daemons serving libvirt's test driver over TCP on loopback.

Each hypervisor ``hvNN`` is one ``libvirtd --listen`` started the lab's way (``lab.hosts``:
a private mount namespace over /etc/libvirt, /run/libvirt, /var/lib/libvirt and
/var/log/libvirt), listening on 127.0.2.N:16509 with ``auth_tcp = "none"``. The daemons
load no hypervisor driver modules (``LIBVIRT_DRIVER_DIR`` points at an empty directory):
the test driver is built into libvirt itself, so a daemon starts in a few milliseconds and
uses about 10 MiB, and fifty of them cost less than one QEMU-capable one.

The test driver keeps ``test:///default``'s state only while a connection to it is open,
so ``Fleet`` holds one connection per daemon from the moment it defines the guests until
it stops the daemons. libvirt's event loop runs in a thread of this process, so those
connections answer the daemons' keepalive probes however long a benchmark takes.
"""

import os
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import libvirt

from paths import import_collection_module  # first: it puts lab and the collection on sys.path

from lab.connection import open_lab_connection
from lab.guests import ensure_event_loop
from lab.hosts import LabError, LabHost, ensure_system_prerequisites, firewall_refusal, listener_of
from lab.layout import LabLayout

GuestMetadata = import_collection_module("plugins.module_utils.metadata").GuestMetadata

PORT = 16509
FLEET_NETWORK = "127.0.2"  # never the lab's 127.0.0.x hosts
PROXY_NETWORK = "127.0.3"  # the delay proxy's side of each hypervisor
HUNG_ADDRESS = FLEET_NETWORK + ".250"  # accepts and never answers (see delay_proxy.py)
MAX_HYPERVISORS = 249
# Fixed, so a guest keeps its UUID from one run to the next.
_UUID_NAMESPACE = uuid.UUID("6f1d2c48-0b7a-4e55-9d3e-5a8c1e2f7b90")

# The mix of a fleet: (weight, value). Weighted by a seeded random generator per guest.
_STATES = ((6, "running"), (1, "paused"), (3, "stopped"))  # the collection's state names
_MEMORY_MIB = ((2, 512), (4, 1024), (5, 2048), (3, 4096), (1, 8192))
_ENVS = ((5, "prod"), (3, "staging"), (2, "dev"))
_ROLES = ((4, "web"), (2, "db"), (2, "cache"), (1, "queue"), (1, "batch"))
_TEAMS = ("payments", "search", "platform", "data", "mobile")


@dataclass(frozen=True)
class HypervisorSpec:
    """One benchmark hypervisor: hv<index> on 127.0.2.<index>."""

    index: int

    def __post_init__(self):
        if not 1 <= self.index <= MAX_HYPERVISORS:
            raise ValueError(f"benchmark hypervisor index must be 1..{MAX_HYPERVISORS}, got {self.index}")

    @property
    def name(self):
        return f"hv{self.index:02d}"

    @property
    def address(self):
        return f"{FLEET_NETWORK}.{self.index}"

    @property
    def proxy_address(self):
        return f"{PROXY_NETWORK}.{self.index}"

    @property
    def uri(self):
        return test_uri(self.address)

    @property
    def proxied_uri(self):
        return test_uri(self.proxy_address)

    @property
    def host_uuid(self):
        return str(uuid.uuid5(_UUID_NAMESPACE, self.name))


def test_uri(address):
    return f"test+tcp://{address}/default"


@dataclass(frozen=True)
class GuestSpec:
    """What one benchmark guest is; the same index on the same hypervisor is the same guest."""

    hypervisor: str
    index: int
    uuid: str
    vcpus: int
    memory_mib: int
    state: str
    tags: dict
    disks: tuple
    mac: str

    @property
    def name(self):
        return f"{self.hypervisor}-vm{self.index:04d}"


def _weighted(rng, choices):
    return rng.choices([value for _weight, value in choices], weights=[weight for weight, _value in choices])[0]


def guest_spec(hypervisor, index):
    """Guest number ``index`` (from 1) of ``hypervisor`` (a HypervisorSpec): deterministic."""
    rng = random.Random(f"{hypervisor.name}/{index}")
    name = f"{hypervisor.name}-vm{index:04d}"
    disks = [("vda", f"/var/lib/libvirt/images/{name}.qcow2")]
    if rng.random() < 0.3:
        disks.append(("vdb", f"/var/lib/libvirt/images/{name}-data.qcow2"))
    tags = {"env": _weighted(rng, _ENVS), "role": _weighted(rng, _ROLES), "team": rng.choice(_TEAMS),
            "backup": rng.random() < 0.7}
    if rng.random() < 0.2:
        tags["migratable"] = False
    return GuestSpec(
        hypervisor=hypervisor.name, index=index, uuid=str(uuid.uuid5(_UUID_NAMESPACE, name)),
        vcpus=rng.randint(1, 4), memory_mib=_weighted(rng, _MEMORY_MIB), state=_weighted(rng, _STATES),
        tags=tags, disks=tuple(disks),
        mac="52:54:00:%02x:%02x:%02x" % (hypervisor.index, index >> 8, index & 0xFF))


def domain_xml(guest):
    """The guest's libvirt definition, built with ElementTree."""
    domain = ElementTree.Element("domain", type="kvm")
    ElementTree.SubElement(domain, "name").text = guest.name
    ElementTree.SubElement(domain, "uuid").text = guest.uuid
    ElementTree.SubElement(domain, "memory", unit="MiB").text = str(guest.memory_mib)
    ElementTree.SubElement(domain, "currentMemory", unit="MiB").text = str(guest.memory_mib)
    ElementTree.SubElement(domain, "vcpu", placement="static").text = str(guest.vcpus)
    os_element = ElementTree.SubElement(domain, "os")
    ElementTree.SubElement(os_element, "type", arch="x86_64", machine="pc-q35-7.2").text = "hvm"
    ElementTree.SubElement(os_element, "boot", dev="hd")
    devices = ElementTree.SubElement(domain, "devices")
    for target, path in guest.disks:
        disk = ElementTree.SubElement(devices, "disk", type="file", device="disk")
        ElementTree.SubElement(disk, "driver", name="qemu", type="qcow2")
        ElementTree.SubElement(disk, "source", file=path)
        ElementTree.SubElement(disk, "target", dev=target, bus="virtio")
    nic = ElementTree.SubElement(devices, "interface", type="network")
    ElementTree.SubElement(nic, "mac", address=guest.mac)
    ElementTree.SubElement(nic, "source", network="default")
    ElementTree.SubElement(nic, "model", type="virtio")
    GuestMetadata(guest.tags).write_into(domain)
    return ElementTree.tostring(domain, encoding="unicode")


def libvirtd_conf(spec):
    return f"""# written by the kvmops.virt inventory benchmark for {spec.name}
listen_tls = 0
listen_tcp = 1
listen_addr = "{spec.address}"
tcp_port = "{PORT}"
auth_tcp = "none"
auth_unix_rw = "none"
host_uuid = "{spec.host_uuid}"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""


class BenchDaemon(LabHost):
    """A lab-style libvirtd that serves only the test driver."""

    def __init__(self, spec, layout, driver_dir):
        super().__init__(spec, layout)
        self.driver_dir = driver_dir

    def write_config(self):
        self._make_dirs()
        (self.dir / "etc" / "libvirtd.conf").write_text(libvirtd_conf(self.spec))
        self.firewall_refusal_file.write_text(firewall_refusal(self.spec))
        self.firewall_refusal_file.chmod(0o755)

    def _check_free(self):
        holder = listener_of(self.spec.address, PORT)
        if holder:
            raise LabError(f"{self.spec.name}: {self.spec.address}:{PORT} is taken by {holder}; "
                           "another benchmark run? It holds /tmp/kvmops-bench.lock while it runs.")

    def _launch_environment(self):
        # no driver modules: the test driver is part of libvirt.so itself
        return dict(os.environ, LIBVIRT_DRIVER_DIR=str(self.driver_dir))

    def _before_stop(self):
        """Nothing runs under a test-driver daemon: no guests to power off first."""


class Fleet:
    """The daemons, their guests and the connections that keep the guests alive.

    ``prepare(hosts, guests)`` makes hypervisors 1..hosts run with exactly ``guests`` guests
    each (growing only: guest i is the same guest whatever the count); ``stop()`` ends
    every daemon it started and checks that no process of theirs is left.
    """

    def __init__(self, root, log=print):
        self.layout = LabLayout(Path(root))
        self.driver_dir = Path(root) / "no-driver-modules"
        self.log = log
        self.daemons = {}  # index -> BenchDaemon
        self.holders = {}  # index -> open virConnect keeping the test driver's state
        self.guest_counts = {}  # index -> guests defined
        self.timings = []  # (what, seconds)

    def spec(self, index):
        return HypervisorSpec(index)

    def specs(self, hosts):
        return [HypervisorSpec(index) for index in range(1, hosts + 1)]

    def start(self):
        """Check the machine and end the daemons a killed earlier run left behind."""
        ensure_system_prerequisites()
        self.driver_dir.mkdir(parents=True, exist_ok=True)
        ensure_event_loop()
        stale = []
        if self.layout.hosts_dir.is_dir():
            for entry in sorted(self.layout.hosts_dir.iterdir()):
                if entry.name.startswith("hv") and entry.name[2:].isdigit():
                    daemon = BenchDaemon(HypervisorSpec(int(entry.name[2:])), self.layout, self.driver_dir)
                    if daemon.is_running() or daemon.namespace_pids():
                        daemon.stop()
                        stale.append(daemon.spec.name)
        if stale:
            self.log(f"stopped daemons left by an earlier run: {', '.join(stale)}")

    def prepare(self, hosts, guests):
        """Hypervisors 1..hosts up, each with exactly ``guests`` guests; returns seconds taken."""
        started = time.monotonic()
        missing = [spec for spec in self.specs(hosts) if spec.index not in self.daemons]
        if missing:
            self._start_daemons(missing)
        short = [spec for spec in self.specs(hosts) if self.guest_counts[spec.index] != guests]
        if short:
            self._define_guests(short, guests)
        return time.monotonic() - started

    def _start_daemons(self, specs):
        started = time.monotonic()
        daemons = [BenchDaemon(spec, self.layout, self.driver_dir) for spec in specs]
        # registered before starting, so stop() also ends one that failed half-way
        for daemon in daemons:
            self.daemons[daemon.spec.index] = daemon
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda daemon: daemon.start(timeout=30), daemons))
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(self._hold, daemons))
        seconds = time.monotonic() - started
        self.timings.append((f"start {len(specs)} libvirtd (hv{specs[0].index:02d}..hv{specs[-1].index:02d})", seconds))
        self.log(f"started {len(specs)} libvirtd daemons in {seconds:.2f} s")

    def _hold(self, daemon):
        """Open the connection that keeps this daemon's test driver state; drop its sample guest."""
        conn = open_lab_connection(daemon.spec.uri)
        self.holders[daemon.spec.index] = conn
        for domain in conn.listAllDomains():
            if domain.isActive():
                domain.destroy()
            domain.undefine()
        self.guest_counts[daemon.spec.index] = 0

    def _define_guests(self, specs, guests):
        started = time.monotonic()
        counts = {self.guest_counts[spec.index] for spec in specs}
        if any(count > guests for count in counts):
            raise LabError(f"the fleet only grows: it has {max(counts)} guests per hypervisor, {guests} asked; "
                           "order scenarios by guests")
        # One thread per few daemons: the calls wait on the daemons, which run in parallel.
        with ThreadPoolExecutor(max_workers=min(len(specs), 16)) as pool:
            defined = sum(pool.map(lambda spec: self._grow(spec, guests), specs))
        seconds = time.monotonic() - started
        self.timings.append((f"define {defined} guests (hv{specs[0].index:02d}..hv{specs[-1].index:02d} up to {guests} "
                             "each)", seconds))
        self.log(f"defined {defined} guests on {len(specs)} hypervisors in {seconds:.2f} s")

    def _grow(self, spec, guests):
        conn = self.holders[spec.index]
        first = self.guest_counts[spec.index] + 1
        for index in range(first, guests + 1):
            guest = guest_spec(spec, index)
            domain = conn.defineXML(domain_xml(guest))
            if guest.state in ("running", "paused"):
                domain.create()
            if guest.state == "paused":
                domain.suspend()
        present = len(conn.listAllDomains())
        if present != guests:
            raise LabError(f"{spec.name}: {present} guests after defining, expected {guests}")
        self.guest_counts[spec.index] = guests
        return guests - first + 1

    def node_info(self, index):
        """libvirt's getInfo() of a running hypervisor (model, memory MiB, cpus, ...)."""
        return self.holders[index].getInfo()

    def stop(self):
        """Close the holding connections, stop every daemon; LabError if a process survives."""
        for conn in self.holders.values():
            try:
                conn.close()
            except libvirt.libvirtError:
                pass  # the daemon is going anyway
        self.holders.clear()
        survivors = []
        for daemon in self.daemons.values():
            try:
                daemon.stop(timeout=10)
            except LabError as error:
                survivors.append(str(error))
        self.daemons.clear()
        if survivors:
            raise LabError("; ".join(survivors))
