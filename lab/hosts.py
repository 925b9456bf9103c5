"""Start and stop the lab's libvirt hypervisors.

Each host is one ``libvirtd --listen`` in a private mount namespace that bind-mounts the
host's own directories over /etc/libvirt, /run/libvirt, /var/lib/libvirt and
/var/log/libvirt. QEMU processes stay in that namespace (``namespaces = [ ]`` in
qemu.conf), so "every process this host started" is exactly "every process in this mount
namespace": that is how ``stop`` finds what to end, and why nothing outlives it.
"""

import grp
import os
import pwd
import signal
import subprocess
import time

import libvirt

from .connection import LibvirtOperationError, open_lab_connection
from .layout import LabLayout

_MOUNT_POINTS = ("/etc/libvirt", "/run/libvirt", "/var/lib/libvirt", "/var/log/libvirt")
_PRIVATE_DIRS = ("etc", "run", "lib", "log")

# Runs inside the new mount namespace; paths arrive as positional arguments, never
# interpolated into the script.
_LAUNCH_SCRIPT = """set -e
mount --bind "$1" /etc/libvirt
mount --bind "$2" /run/libvirt
mount --bind "$3" /var/lib/libvirt
mount --bind "$4" /var/log/libvirt
exec libvirtd --daemon --listen --pid-file "$5"
"""


LIBVIRTD_PORT = 16509


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
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                    command = cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                command = "(exited)"
            return f"pid {pid}: {command}"
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
listen_tls = 0
listen_tcp = 1
listen_addr = "{spec.address}"
tcp_port = "{LIBVIRTD_PORT}"
auth_tcp = "none"
auth_unix_rw = "none"
host_uuid = "{spec.host_uuid}"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""


def qemu_conf(spec):
    first, last = spec.migration_ports
    return f"""# written by the kvmops.virt lab for {spec.name}
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
# guest stdio straight to files: no virtlogd
stdio_handler = "file"
# QEMU stays in this host's mount namespace, which is how the lab finds its processes
namespaces = [ ]
# two daemons would create the same /machine/... cgroups; per-guest CPU time still comes
# from /proc, which is all the lab and the collection need
cgroup_controllers = [ ]
migration_address = "{spec.address}"
migration_host = "{spec.address}"
migration_port_min = {first}
migration_port_max = {last}
"""


class LabHost:
    """One lab hypervisor's files and daemon."""

    def __init__(self, spec, layout=None):
        self.spec = spec
        self.layout = layout or LabLayout()
        self.dir = self.layout.host_dir(spec)

    @property
    def pid_file(self):
        return self.dir / "libvirtd.pid"

    @property
    def mntns_file(self):
        return self.dir / "mntns"

    def pid(self):
        """PID of this host's libvirtd if it runs, else None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            with open(f"/proc/{pid}/comm", encoding="ascii") as comm:
                return pid if comm.read().strip() == "libvirtd" else None
        except OSError:
            return None

    def is_running(self):
        return self.pid() is not None

    def write_config(self):
        for sub in _PRIVATE_DIRS:
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "etc" / "libvirtd.conf").write_text(libvirtd_conf(self.spec))
        (self.dir / "etc" / "qemu.conf").write_text(qemu_conf(self.spec))

    def start(self, timeout=60):
        """Start the daemon unless it runs; returns True when it was started."""
        if self.is_running():
            return False
        holder = listener_of(self.spec.address, LIBVIRTD_PORT)
        if holder:
            raise LabError(f"{self.spec.name}: {self.spec.address}:{LIBVIRTD_PORT} is taken by {holder}; "
                           "a lab started from another directory? Stop that one first ('make lab-down' there).")
        self.write_config()
        self.pid_file.unlink(missing_ok=True)
        private = [str(self.dir / sub) for sub in _PRIVATE_DIRS]
        with open(self.dir / "launch.log", "wb") as log:
            launched = subprocess.run(
                ["unshare", "--mount", "--propagation", "private",
                 "sh", "-c", _LAUNCH_SCRIPT, "lab-launch", *private, str(self.pid_file)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=False)
        if launched.returncode != 0:
            raise LabError(f"{self.spec.name}: libvirtd did not start "
                           f"(exit {launched.returncode}); see {self.dir / 'launch.log'}")
        self._wait_until_answering(timeout)
        self.mntns_file.write_text(os.readlink(f"/proc/{self.pid()}/ns/mnt"))
        return True

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
        """Every process in this host's mount namespace (its libvirtd and QEMUs)."""
        try:
            namespace = self.mntns_file.read_text().strip()
        except OSError:
            return []
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{entry}/ns/mnt") == namespace:
                    found.append(int(entry))
            except OSError:
                continue  # exited meanwhile, or a kernel thread
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

    def stop(self, timeout=15):
        """Stop guests and daemon; returns the PIDs that had to be killed by the sweep."""
        pid = self.pid()
        if pid:
            self._destroy_guests()
            _terminate([pid], timeout)
        leftovers = self.namespace_pids()
        _terminate(leftovers, timeout, sig=signal.SIGKILL)
        still = self.namespace_pids()
        if still:
            raise LabError(f"{self.spec.name}: processes {still} survived SIGKILL")
        self.pid_file.unlink(missing_ok=True)
        self.mntns_file.unlink(missing_ok=True)
        return leftovers


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
    for mount_point in _MOUNT_POINTS + ("/var/cache/libvirt",):
        os.makedirs(mount_point, exist_ok=True)
