"""Where the lab keeps its files and what each lab hypervisor is called, listens on and owns."""

import os
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path

# Fixed so that a host keeps its UUID across lab restarts (libvirt refuses to migrate
# between two hosts with the same UUID, and tests compare UUIDs).
_HOST_UUID_NAMESPACE = uuid.UUID("0d3c9a5e-2f1b-4c7e-9a61-6b2f8e4d1c30")

MAX_HOSTS = 200
DEFAULT_HOSTS = 3
_FIRST_MIGRATION_PORT = 49152
_MIGRATION_PORTS_PER_HOST = 32

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class HostSpec:
    """One lab hypervisor: kvm<index>, reachable on 127.0.0.<index + 1>."""

    index: int

    def __post_init__(self):
        if not 1 <= self.index <= MAX_HOSTS:
            raise ValueError(f"lab host index must be 1..{MAX_HOSTS}, got {self.index}")

    @property
    def name(self):
        return f"kvm{self.index}"

    @property
    def address(self):
        return f"127.0.0.{self.index + 1}"

    @property
    def uri(self):
        return f"qemu+tcp://{self.address}/system"

    @property
    def host_uuid(self):
        return str(uuid.uuid5(_HOST_UUID_NAMESPACE, self.name))

    @property
    def migration_ports(self):
        first = _FIRST_MIGRATION_PORT + (self.index - 1) * _MIGRATION_PORTS_PER_HOST
        return first, first + _MIGRATION_PORTS_PER_HOST - 1


# How a client reaches a lab host: the LAB_TRANSPORT of 'make lab-up' and the lab inventory.
TRANSPORTS = ("tcp", "ssh", "tls")


def host_uri(spec, transport, layout):
    """The URI of a lab host over tcp, ssh (the lab's keys, /etc/ssh/ssh_config.d) or tls
    (the controller's certificate under the lab's pki/controller)."""
    if transport == "tcp":
        return spec.uri
    if transport == "ssh":
        return f"qemu+ssh://root@{spec.address}/system"
    if transport == "tls":
        return f"qemu+tls://{spec.address}/system?pkipath=" + urllib.parse.quote(str(layout.controller_pki), safe="/")
    raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")


def host_from_name(name):
    if not name.startswith("kvm") or not name[3:].isdigit():
        raise ValueError(f"{name!r} is not a lab host name (expected kvm1, kvm2, ...)")
    return HostSpec(int(name[3:]))


NETWORK_HOST_PREFIX = "kvmnet"
MAX_NETWORK_HOSTS = 9


@dataclass(frozen=True)
class NetworkHostSpec:
    """A lab hypervisor in network namespaces of its own: kvmnet<index>.

    It has no TCP listener and no address outside its namespace; it is reached through
    its unix socket, which lives in the host's run directory under the lab root, so its
    URI depends on where the lab is.
    """

    index: int
    lab_root: Path

    def __post_init__(self):
        if not 1 <= self.index <= MAX_NETWORK_HOSTS:
            raise ValueError(f"lab network host index must be 1..{MAX_NETWORK_HOSTS}, got {self.index}")

    @property
    def name(self):
        return f"{NETWORK_HOST_PREFIX}{self.index}"

    @property
    def socket_path(self):
        # libvirtd's /run/libvirt is the host's run/ directory (a bind mount)
        return Path(self.lab_root) / "hosts" / self.name / "run" / "libvirt-sock"

    @property
    def uri(self):
        return "qemu+unix:///system?socket=" + urllib.parse.quote(str(self.socket_path), safe="/")

    @property
    def host_uuid(self):
        return str(uuid.uuid5(_HOST_UUID_NAMESPACE, self.name))


def network_host_from_name(name, lab_root):
    number = name[len(NETWORK_HOST_PREFIX):]
    if not name.startswith(NETWORK_HOST_PREFIX) or not number.isdigit():
        raise ValueError(f"{name!r} is not a lab network host name (expected {NETWORK_HOST_PREFIX}1, ...)")
    return NetworkHostSpec(int(number), Path(lab_root))


class LabLayout:
    """The lab's directory tree; everything the lab writes lives below root."""

    def __init__(self, root=None):
        self.root = Path(root or os.environ.get("KVMOPS_LAB_DIR") or REPO_ROOT / ".lab").resolve()

    @property
    def hosts_dir(self):
        return self.root / "hosts"

    @property
    def image_dir(self):
        return self.root / "image"

    @property
    def guests_dir(self):
        return self.root / "guests"

    @property
    def inventory_path(self):
        return self.root / "inventory.yml"

    @property
    def controller_pki(self):
        """The controller's TLS client files, for ?pkipath= (the lab's CA signed them)."""
        return self.root / "pki" / "controller"

    def host_dir(self, spec):
        return self.hosts_dir / spec.name

    def known_hosts(self):
        """Every host that has a directory, running or not, in index order."""
        if not self.hosts_dir.is_dir():
            return []
        specs = []
        for entry in self.hosts_dir.iterdir():
            try:
                specs.append(host_from_name(entry.name))
            except ValueError:
                continue
        return sorted(specs, key=lambda spec: spec.index)

    def network_host_spec(self, index=1):
        return NetworkHostSpec(index, self.root)

    def known_network_hosts(self):
        """Every private-network host that has a directory, running or not, in index order."""
        if not self.hosts_dir.is_dir():
            return []
        specs = []
        for entry in self.hosts_dir.iterdir():
            try:
                specs.append(network_host_from_name(entry.name, self.root))
            except ValueError:
                continue
        return sorted(specs, key=lambda spec: spec.index)

    def serial_log(self, guest_name):
        return self.guests_dir / f"{guest_name}.serial.log"
