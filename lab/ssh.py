"""ssh between the controller and the lab hypervisors, and between the hypervisors (p2p).

Each lab host runs an sshd on its own loopback address, port 22, inside its mount
namespace, so a session there reaches that host's libvirtd through its unix socket (what
``qemu+ssh://`` does with virt-ssh-helper). Keys and trust, as on a real fleet:

- every host has a host key, and a client key of its own (the one its libvirtd uses to
  dial the destination of a p2p migration); its /etc/ssh (private to its namespace) holds
  the client configuration that names them;
- one known_hosts lists every lab host's host key; the controller and every host use it;
- each host's authorized_keys holds the controller's key and every lab host's client key;
- the controller's configuration is /etc/ssh/ssh_config.d/kvmops-lab.conf, for the lab's
  addresses only, so URIs stay as users write them: ``qemu+ssh://root@127.0.0.2/system``.
"""

import subprocess
from pathlib import Path

SSH_PORT = 22
CONTROLLER_CONFIG = Path("/etc/ssh/ssh_config.d/kvmops-lab.conf")
SSHD = "/usr/sbin/sshd"
KEY_TYPE = "ed25519"


def keygen(path, comment):
    """An ed25519 key pair at path (and path.pub), unless it exists; returns the public key line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", KEY_TYPE, "-N", "", "-C", comment, "-f", str(path)],
                       check=True, capture_output=True, timeout=60)
    return path.with_name(path.name + ".pub").read_text().strip()


def known_hosts_line(address, host_public_key):
    key_type, key = host_public_key.split()[:2]
    return f"{address} {key_type} {key}"


def client_config(identity, known_hosts, addresses=None, written_for="the kvmops.virt lab"):
    """ssh client settings: this identity only, these known hosts only, never a prompt.
    With addresses, only for connections to them (the controller's, a drop-in file)."""
    lines = [f"# written by {written_for}"]
    indent = ""
    if addresses is not None:
        lines.append("Match host " + ",".join(addresses))
        indent = "    "
    lines += [f"{indent}{setting}" for setting in (
        f"IdentityFile {identity}", "IdentitiesOnly yes", f"UserKnownHostsFile {known_hosts}",
        "GlobalKnownHostsFile /dev/null", "StrictHostKeyChecking yes", "BatchMode yes",
        "ConnectTimeout 10", "ServerAliveInterval 5", "ServerAliveCountMax 3")]
    return "\n".join(lines) + "\n"


def sshd_config(address, host_key, authorized_keys, pid_file, written_for):
    return f"""# written by the kvmops.virt lab for {written_for}
ListenAddress {address}:{SSH_PORT}
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized_keys}
PermitRootLogin prohibit-password
AllowUsers root
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
X11Forwarding no
AllowTcpForwarding no
AllowAgentForwarding no
PermitTunnel no
PrintMotd no
# the lab's key files may live under a world-writable directory such as /tmp (a clone
# there), which StrictModes rejects; the lab writes them itself, mode 0600, as root
StrictModes no
# the inventory and the event sources open a connection per hypervisor at once
MaxStartups 64:30:128
LogLevel VERBOSE
"""


class LabSsh:
    """The lab's shared ssh files under <lab>/ssh: the controller's key and the known hosts."""

    def __init__(self, layout):
        self.dir = layout.root / "ssh"
        self.controller_key = self.dir / f"id_{KEY_TYPE}"
        self.known_hosts = self.dir / "known_hosts"

    def controller_public_key(self):
        return keygen(self.controller_key, "kvmops-lab-controller")

    def write_trust(self, hosts):
        """known_hosts for every host; each host's authorized_keys: the controller and every host."""
        controller = self.controller_public_key()
        self.known_hosts.write_text("".join(known_hosts_line(host.spec.address, host.ssh_host_public_key()) + "\n"
                                            for host in hosts))
        clients = [controller] + [host.ssh_client_public_key() for host in hosts]
        for host in hosts:
            host.write_authorized_keys(clients)

    def write_controller_config(self, addresses):
        CONTROLLER_CONFIG.parent.mkdir(parents=True, exist_ok=True)
        CONTROLLER_CONFIG.write_text(client_config(self.controller_key, self.known_hosts, addresses,
                                                   f"the kvmops.virt lab in {self.dir.parent} ('make lab-down' removes it)"))

    def remove_controller_config(self):
        if CONTROLLER_CONFIG.exists() and str(self.dir.parent) in CONTROLLER_CONFIG.read_text():
            CONTROLLER_CONFIG.unlink()
