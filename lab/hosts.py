"""Start and stop the lab's libvirt hypervisors.

Each host is one ``libvirtd --listen`` in a private mount namespace that bind-mounts the
host's own directories over /etc/libvirt, /run/libvirt, /var/lib/libvirt and
/var/log/libvirt. QEMU processes stay in that namespace (``namespaces = [ ]`` in
qemu.conf), so "every process this host started" is exactly "every process in this mount
namespace": that is how ``stop`` finds what to end, and why nothing outlives it.

Those hosts share the machine's network namespace, so they must never change its
firewall: the firewall tools libvirt runs (iptables, ip6tables, ebtables) are replaced
inside their mount namespace by a script that refuses, and starting a NAT or isolated
network there fails before any rule is written. ``NetworkLabHost`` (kvmnet<N>) is the
host for those: its libvirtd also has a network namespace of its own, where libvirt may
run iptables and dnsmasq, and is reached through its unix socket only.
"""

import grp
import os
import pwd
import shutil
import signal
import subprocess
import time

import libvirt

from . import pki
from .connection import LibvirtOperationError, open_lab_connection
from .layout import LabLayout
from .ssh import SSH_PORT, SSHD, LabSsh, client_config, keygen, sshd_config

_MOUNT_POINTS = ("/etc/libvirt", "/run/libvirt", "/var/lib/libvirt", "/var/log/libvirt")
_PRIVATE_DIRS = ("etc", "run", "lib", "log")
# A host's own ssh client configuration and TLS files, where ssh and libvirt look by
# default: what its libvirtd uses when it dials another host (p2p migration).
_CLIENT_MOUNT_POINTS = ("/etc/ssh", "/etc/pki")
_CLIENT_DIRS = ("etc-ssh", "pki")

# The firewall tools libvirt 9.0 runs, by these compiled-in paths (not looked up in PATH).
FIREWALL_TOOLS = ("/usr/sbin/iptables", "/usr/sbin/ip6tables", "/usr/sbin/ebtables")
# What the private-network host needs (libvirt finds dnsmasq through PATH), and the package of each.
NETWORK_HOST_TOOLS = {"iptables": "iptables", "ip6tables": "iptables", "dnsmasq": "dnsmasq-base", "ip": "iproute2"}
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_MAX_UNIX_SOCKET_PATH = 107  # sun_path is 108 bytes with its terminating NUL

# Runs inside the new mount namespace; paths arrive as positional arguments, never
# interpolated into the script. A bind mount over a tool's path lands on the file its
# symlinks lead to (the alternatives' target), in this namespace only.
_LAUNCH_SCRIPT = """set -e
mount --bind "$1" /etc/libvirt
mount --bind "$2" /run/libvirt
mount --bind "$3" /var/lib/libvirt
mount --bind "$4" /var/log/libvirt
mount --bind "$5" /etc/ssh
mount --bind "$6" /etc/pki
pid_file="$7"
refusal="$8"
shift 8
for tool in "$@"; do
    if [ -e "$tool" ]; then mount --bind "$refusal" "$tool"; fi
done
exec libvirtd --daemon --listen --pid-file "$pid_file"
"""

# Runs inside new network and mount namespaces. The fresh sysfs shows this namespace's
# interfaces (libvirt sets its bridges' options through /sys/class/net); without it
# libvirt would see the machine's. No --listen: the unix socket is the only way in.
_NETWORK_LAUNCH_SCRIPT = """set -e
ip link set lo up
mount -t sysfs sysfs /sys
mount --bind "$1" /etc/libvirt
mount --bind "$2" /run/libvirt
mount --bind "$3" /var/lib/libvirt
mount --bind "$4" /var/log/libvirt
exec libvirtd --daemon --pid-file "$5"
"""


LIBVIRTD_PORT = 16509
LIBVIRTD_TLS_PORT = 16514


class LabError(Exception):
    pass


def listener_of(address, port):
    """'pid N: command' (or a description) of whatever listens on address:port, else None."""
    wanted = "%08X:%04X" % (int.from_bytes(bytes(map(int, address.split("."))), "little"), port)
    inode = None
    with open("/proc/net/tcp", encoding="ascii") as table:
        for row in table.readlines()[1:]:
            fields = row.split()
            if fields[1] == wanted and fields[3] == "0A":  # 0A: LISTEN
                inode = fields[9]
                break
    if inode is None:
        return None
    socket_link = f"socket:[{inode}]"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if _holds(pid, socket_link):
            return f"pid {pid}: {_command_line(pid).strip() or '(exited)'}"
    return "a process this user cannot see"


def _holds(pid, link):
    """Whether a process has an fd pointing at link. Fds come and go while we look
    (other threads open and close them), so a vanished fd skips that fd, not the process."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False  # exited meanwhile
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == link:
                return True
        except OSError:
            continue
    return False


def libvirtd_conf(spec):
    return f"""# written by the kvmops.virt lab for {spec.name}
# TLS with the lab's certificates at libvirt's default paths (/etc/pki is this host's own),
# client certificates checked against the lab's CA; plain TCP for the tests that want it
listen_tls = 1
tls_port = "{LIBVIRTD_TLS_PORT}"
listen_tcp = 1
listen_addr = "{spec.address}"
tcp_port = "{LIBVIRTD_PORT}"
auth_tcp = "none"
auth_tls = "none"
auth_unix_rw = "none"
host_uuid = "{spec.host_uuid}"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""


def firewall_refusal(spec):
    """The script a root-namespace host's libvirtd finds instead of iptables and its kin."""
    return f"""#!/bin/sh
# written by the kvmops.virt lab for {spec.name}: stands in for the firewall tools in its
# mount namespace, because this host shares the machine's firewall
echo "kvmops lab: {spec.name} shares this machine's firewall, so $0 is refused here;" \
     "start NAT and isolated networks on the private-network host kvmnet1" >&2
exit 1
"""


def _qemu_conf_common(spec):
    return f"""# written by the kvmops.virt lab for {spec.name}
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
# guest stdio straight to files: no virtlogd
stdio_handler = "file"
# QEMU stays in this host's namespaces, which is how the lab finds its processes
namespaces = [ ]
# two daemons would create the same /machine/... cgroups; per-guest CPU time still comes
# from /proc, which is all the lab and the collection need
cgroup_controllers = [ ]
"""


def qemu_conf(spec):
    first, last = spec.migration_ports
    return _qemu_conf_common(spec) + f"""migration_address = "{spec.address}"
migration_host = "{spec.address}"
migration_port_min = {first}
migration_port_max = {last}
# migrations that ask for TLS: certificates in /etc/pki/qemu (this host's own), peers checked
migrate_tls_x509_verify = 1
"""


def network_libvirtd_conf(spec):
    return f"""# written by the kvmops.virt lab for {spec.name}: unix socket only, no TCP listener
listen_tls = 0
listen_tcp = 0
auth_unix_rw = "none"
host_uuid = "{spec.host_uuid}"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""


def network_qemu_conf(spec):
    return _qemu_conf_common(spec)


class LabHost:
    """One lab hypervisor's files and daemon."""

    # the namespaces of its own that every process of this host is in
    NAMESPACES = ("mnt",)

    def __init__(self, spec, layout=None):
        self.spec = spec
        self.layout = layout or LabLayout()
        self.dir = self.layout.host_dir(spec)

    @property
    def pid_file(self):
        return self.dir / "libvirtd.pid"

    def namespace_file(self, kind):
        return self.dir / f"{kind}ns"

    @property
    def mntns_file(self):
        return self.namespace_file("mnt")

    @property
    def firewall_refusal_file(self):
        return self.dir / "firewall-refused"

    def pid(self):
        """PID of this host's libvirtd if it runs, else None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _command_name(pid) == "libvirtd" else None

    def is_running(self):
        return self.pid() is not None

    def kill(self, timeout=5.0):
        """Kill libvirtd at once (SIGKILL, as a crash would); its guests' QEMUs run on."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while self.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.05)

    def _make_dirs(self):
        for sub in _PRIVATE_DIRS + _CLIENT_DIRS:
            (self.dir / sub).mkdir(parents=True, exist_ok=True)

    def write_config(self):
        self._make_dirs()
        (self.dir / "etc" / "libvirtd.conf").write_text(libvirtd_conf(self.spec))
        (self.dir / "etc" / "qemu.conf").write_text(qemu_conf(self.spec))
        self.firewall_refusal_file.write_text(firewall_refusal(self.spec))
        self.firewall_refusal_file.chmod(0o755)
        self.write_ssh_config()
        self.write_certificates()

    # --- ssh: this host's sshd, and its own client identity for p2p migrations ---------
    @property
    def ssh_dir(self):
        return self.dir / "ssh"

    @property
    def sshd_pid_file(self):
        return self.dir / "sshd.pid"

    def ssh_host_public_key(self):
        return keygen(self.ssh_dir / "ssh_host_ed25519_key", f"{self.spec.name} host key")

    def ssh_client_public_key(self):
        return keygen(self.ssh_dir / "id_ed25519", f"root@{self.spec.name}")

    def write_authorized_keys(self, public_keys):
        path = self.ssh_dir / "authorized_keys"
        path.write_text("".join(key + "\n" for key in public_keys))
        path.chmod(0o600)

    def write_ssh_config(self):
        (self.dir / "etc-ssh").mkdir(parents=True, exist_ok=True)
        self.ssh_host_public_key()
        self.ssh_client_public_key()
        (self.ssh_dir / "sshd_config").write_text(sshd_config(
            self.spec.address, self.ssh_dir / "ssh_host_ed25519_key", self.ssh_dir / "authorized_keys",
            self.sshd_pid_file, self.spec.name))
        (self.dir / "etc-ssh" / "ssh_config").write_text(client_config(
            self.ssh_dir / "id_ed25519", LabSsh(self.layout).known_hosts, written_for=f"the kvmops.virt lab for {self.spec.name}"))

    def sshd_pids(self):
        """The sshd processes of this host: its listener and one per open session. Found by
        the configuration the listener runs on, not by namespace: a listener started for an
        earlier libvirtd of this host (killed and started again) still serves it, since both
        namespaces bind the same directories."""
        config = str(self.ssh_dir / "sshd_config")
        sshds = [pid for pid in _all_pids() if _command_name(pid) == "sshd"]
        listeners = {pid for pid in sshds if config in _command_line(pid)}
        return sorted(pid for pid in sshds if pid in listeners or _parent(pid) in listeners)

    def start_sshd(self):
        """Start this host's sshd inside its mount namespace, unless it runs."""
        pid = self.pid()
        if pid is None or self.sshd_pids():
            return
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        self.write_ssh_config()
        started = subprocess.run(["nsenter", f"--mount=/proc/{pid}/ns/mnt", SSHD, "-f", str(self.ssh_dir / "sshd_config"),
                                  "-E", str(self.dir / "log" / "sshd.log")],
                                 stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, check=False)
        if started.returncode != 0:
            raise LabError(f"{self.spec.name}: sshd did not start: {started.stderr.strip()} "
                           f"(see {self.dir / 'log' / 'sshd.log'})")
        deadline = time.monotonic() + 10
        while listener_of(self.spec.address, SSH_PORT) is None:
            if time.monotonic() > deadline:
                raise LabError(f"{self.spec.name}: sshd does not listen on {self.spec.address}:{SSH_PORT}; "
                               f"see {self.dir / 'log' / 'sshd.log'}")
            time.sleep(0.05)

    def kill_sshd(self):
        """Kill this host's sshd and every session it serves (SIGKILL, as a crash would)."""
        pids = self.sshd_pids()
        _terminate(pids, 5, sig=signal.SIGKILL)
        return pids

    # --- TLS: a server certificate for its address, and a client one for p2p -----------
    def write_certificates(self):
        ca = pki.make_ca(self.layout.root / "pki" / "ca")
        own = self.dir / "pki"
        (own / "CA").mkdir(parents=True, exist_ok=True)
        (own / "CA" / "cacert.pem").write_bytes((ca / "cacert.pem").read_bytes())
        if not (own / "libvirt" / "servercert.pem").exists():
            pki.issue(ca, own / "libvirt" / "servercert.pem", own / "libvirt" / "private" / "serverkey.pem",
                      self.spec.name, "server", addresses=[self.spec.address], names=[self.spec.name])
        if not (own / "libvirt" / "clientcert.pem").exists():
            pki.issue(ca, own / "libvirt" / "clientcert.pem", own / "libvirt" / "private" / "clientkey.pem",
                      self.spec.name, "client")
        # QEMU's own names, in its default directory, for migrations with TLS (VIR_MIGRATE_TLS):
        # the same certificates, since the migration address is the host's address
        qemu = own / "qemu"
        qemu.mkdir(exist_ok=True)
        for source, name in (("CA/cacert.pem", "ca-cert.pem"), ("libvirt/servercert.pem", "server-cert.pem"),
                             ("libvirt/private/serverkey.pem", "server-key.pem"),
                             ("libvirt/clientcert.pem", "client-cert.pem"),
                             ("libvirt/private/clientkey.pem", "client-key.pem")):
            (qemu / name).write_bytes((own / source).read_bytes())
            (qemu / name).chmod(0o600 if name.endswith("key.pem") else 0o644)

    def _check_free(self):
        for port in (LIBVIRTD_PORT, LIBVIRTD_TLS_PORT, SSH_PORT):
            holder = listener_of(self.spec.address, port)
            if holder and port == SSH_PORT and str(self.ssh_dir / "sshd_config") in holder:
                continue  # this host's own sshd, from before its libvirtd was killed: it serves on
            if holder:
                raise LabError(f"{self.spec.name}: {self.spec.address}:{port} is taken by {holder}; "
                               "a lab started from another directory? Stop that one first ('make lab-down' there).")

    def _launch_command(self):
        private = [str(self.dir / sub) for sub in _PRIVATE_DIRS + _CLIENT_DIRS]
        return ["unshare", "--mount", "--propagation", "private",
                "sh", "-c", _LAUNCH_SCRIPT, "lab-launch", *private, str(self.pid_file),
                str(self.firewall_refusal_file), *FIREWALL_TOOLS]

    def _launch_environment(self):
        return None  # the caller's

    def start(self, timeout=60):
        """Start the daemon (and its sshd) unless it runs; returns True when it was started."""
        if self.is_running():
            self.refuse_firewall_tools()
            self._start_companions()
            return False
        self._check_free()
        self.write_config()
        self.pid_file.unlink(missing_ok=True)
        with open(self.dir / "launch.log", "wb") as log:
            launched = subprocess.run(self._launch_command(), env=self._launch_environment(),
                                      stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=False)
        if launched.returncode != 0:
            raise LabError(f"{self.spec.name}: libvirtd did not start "
                           f"(exit {launched.returncode}); see {self.dir / 'launch.log'}")
        self._wait_until_answering(timeout)
        pid = self.pid()
        for kind in self.NAMESPACES:
            self.namespace_file(kind).write_text(os.readlink(f"/proc/{pid}/ns/{kind}"))
        self._start_companions()
        return True

    def _start_companions(self):
        """What serves the host beside libvirtd: its sshd."""
        self.start_sshd()

    def unrefused_firewall_tools(self):
        """The firewall tools (real paths) that the running daemon could still run."""
        pid = self.pid()
        if pid is None:
            return []
        mounted = _mount_points(pid)
        return sorted({os.path.realpath(tool) for tool in FIREWALL_TOOLS if os.path.exists(tool)} - mounted)

    def refuse_firewall_tools(self):
        """Put the refusal over the firewall tools of a running host, when a lab from
        before the refusal (or before iptables was installed) started it. New hosts get
        it from their launch script, before libvirtd runs."""
        unrefused = self.unrefused_firewall_tools()
        if not unrefused:
            return
        self.firewall_refusal_file.write_text(firewall_refusal(self.spec))
        self.firewall_refusal_file.chmod(0o755)
        for tool in unrefused:
            subprocess.run(["nsenter", f"--mount=/proc/{self.pid()}/ns/mnt",
                            "mount", "--bind", str(self.firewall_refusal_file), tool],
                           check=True, capture_output=True, timeout=30)

    def _wait_until_answering(self, timeout):
        deadline = time.monotonic() + timeout
        last_error = "no pid file"
        while time.monotonic() < deadline:
            if self.pid_file.exists() and not self.is_running():
                raise LabError(f"{self.spec.name}: libvirtd exited during start-up; "
                               f"see {self.dir / 'log' / 'libvirtd.log'}")
            try:
                open_lab_connection(self.spec.uri).close()
                return
            except LibvirtOperationError as error:
                last_error = error.detail
            time.sleep(0.1)
        raise LabError(f"{self.spec.name}: {self.spec.uri} did not answer within {timeout} s: {last_error}")

    def namespace_pids(self):
        """Every process in one of this host's namespaces (its libvirtd, QEMUs, dnsmasqs)."""
        namespaces = {}
        for kind in self.NAMESPACES:
            try:
                namespaces[kind] = self.namespace_file(kind).read_text().strip()
            except OSError:
                continue
        if not namespaces:
            return []
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and any(_in_namespace(entry, kind, namespace)
                                       for kind, namespace in namespaces.items()):
                found.append(int(entry))
        return found

    def _destroy_guests(self):
        """Power off running guests through libvirt, so QEMU exits cleanly."""
        try:
            conn = open_lab_connection(self.spec.uri)
        except LibvirtOperationError:
            return  # hung or gone: the namespace sweep in stop() ends its guests
        try:
            for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                try:
                    dom.destroy()
                except libvirt.libvirtError:
                    pass  # already gone: the namespace sweep below is the guarantee
        finally:
            conn.close()

    def _before_stop(self):
        self._destroy_guests()

    def stop(self, timeout=15):
        """Stop guests and daemon; returns the PIDs that had to be killed by the sweep."""
        pid = self.pid()
        if pid:
            self._before_stop()
            _terminate([pid], timeout)
        _terminate(self.sshd_pids(), timeout)  # also one that outlived a killed libvirtd
        leftovers = self.namespace_pids()
        _terminate(leftovers, timeout, sig=signal.SIGKILL)
        still = self.namespace_pids()
        if still:
            raise LabError(f"{self.spec.name}: processes {still} survived SIGKILL")
        self.pid_file.unlink(missing_ok=True)
        for kind in self.NAMESPACES:
            self.namespace_file(kind).unlink(missing_ok=True)
        return leftovers


def _all_pids():
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _command_line(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""  # exited meanwhile


def _parent(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return int(stat.read().rsplit(") ", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _command_name(pid):
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8") as comm:
            return comm.read().strip()
    except OSError:
        return None  # exited meanwhile


def _mount_points(pid):
    with open(f"/proc/{pid}/mountinfo", encoding="utf-8") as mountinfo:
        return {line.split()[4] for line in mountinfo}


def _in_namespace(pid, kind, namespace):
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}") == namespace
    except OSError:
        return False  # exited meanwhile, or a kernel thread


class NetworkLabHost(LabHost):
    """A lab hypervisor in a network namespace of its own (kvmnet<N>).

    Its libvirtd runs under ``unshare --net --mount``: the bridges, firewall rules,
    ip_forward setting and dnsmasq processes of its NAT and isolated networks exist only
    in that namespace, which has nothing but its loopback and what libvirt makes there,
    and is gone with its last process. No TCP listener: the URI names the unix socket.
    """

    NAMESPACES = ("mnt", "net")

    def _make_dirs(self):
        for sub in _PRIVATE_DIRS:
            (self.dir / sub).mkdir(parents=True, exist_ok=True)

    def _start_companions(self):
        """No sshd: the unix socket is the only way in."""

    def write_config(self):
        self._make_dirs()
        (self.dir / "etc" / "libvirtd.conf").write_text(network_libvirtd_conf(self.spec))
        (self.dir / "etc" / "qemu.conf").write_text(network_qemu_conf(self.spec))

    def _check_free(self):
        if len(bytes(self.spec.socket_path)) > _MAX_UNIX_SOCKET_PATH:
            raise LabError(f"{self.spec.name}: the socket path {self.spec.socket_path} is longer than the "
                           f"{_MAX_UNIX_SOCKET_PATH} bytes a unix socket address holds; use a shorter lab directory")
        ensure_network_host_tools()
        try:
            open_lab_connection(self.spec.uri).close()
        except LibvirtOperationError:
            return  # nobody answers on the socket: as it should be
        raise LabError(f"{self.spec.name}: a libvirtd this lab did not start answers on {self.spec.socket_path}; "
                       "stop it first")

    def _launch_command(self):
        private = [str(self.dir / sub) for sub in _PRIVATE_DIRS]
        return ["unshare", "--net", "--mount", "--propagation", "private",
                "sh", "-c", _NETWORK_LAUNCH_SCRIPT, "lab-launch", *private, str(self.pid_file)]

    def _launch_environment(self):
        # libvirt finds dnsmasq through PATH; a PATH without sbin would fail only at network start
        return dict(os.environ, PATH=_SYSTEM_PATH)

    def unrefused_firewall_tools(self):
        return []  # this host's libvirtd runs them in its own network namespace

    def refuse_firewall_tools(self):
        """Nothing to refuse: the firewall libvirt changes here is this host's own."""

    def namespace_path(self, kind="net"):
        """/proc path of the running daemon's namespace, for nsenter; LabError when it is not running."""
        pid = self.pid()
        if pid is None:
            raise LabError(f"{self.spec.name} is not running")
        return f"/proc/{pid}/ns/{kind}"

    def _destroy_networks(self):
        """Stop running networks through libvirt: it ends their dnsmasq and removes their rules."""
        try:
            conn = open_lab_connection(self.spec.uri)
        except LibvirtOperationError:
            return  # the namespace sweep ends dnsmasq; the rules and bridges go with the namespace
        try:
            for network in conn.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE):
                try:
                    network.destroy()
                except libvirt.libvirtError:
                    pass  # the namespace sweep below is the guarantee
        finally:
            conn.close()

    def _before_stop(self):
        self._destroy_guests()
        self._destroy_networks()


def ensure_network_host_tools():
    """LabError naming the packages when a tool the private-network host needs is missing."""
    missing = sorted({package for tool, package in NETWORK_HOST_TOOLS.items()
                      if shutil.which(tool, path=_SYSTEM_PATH) is None})
    if missing:
        raise LabError(f"the private-network lab host needs the packages {', '.join(missing)} "
                       f"('make deps' installs them, as listed in bindep.txt)")


def _terminate(pids, timeout, sig=signal.SIGTERM):
    """Send sig, wait up to timeout for the processes to end, SIGKILL what remains."""
    for pid in pids:
        _signal(pid, sig)
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if _alive(pid):
            _signal(pid, signal.SIGKILL)


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def ensure_system_prerequisites():
    """What libvirtd needs from the machine itself, beyond the packages."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root: it mounts directories and starts libvirtd")
    # Debian's libvirtd refuses to initialise its QEMU driver without this account,
    # even though the lab runs QEMU as root.
    try:
        grp.getgrnam("libvirt-qemu")
    except KeyError:
        subprocess.run(["groupadd", "--system", "libvirt-qemu"], check=True)
    try:
        pwd.getpwnam("libvirt-qemu")
    except KeyError:
        subprocess.run(["useradd", "--system", "--gid", "libvirt-qemu", "--home-dir", "/var/lib/libvirt",
                        "--shell", "/usr/sbin/nologin", "libvirt-qemu"], check=True)
    for mount_point in _MOUNT_POINTS + _CLIENT_MOUNT_POINTS + ("/var/cache/libvirt",):
        os.makedirs(mount_point, exist_ok=True)
