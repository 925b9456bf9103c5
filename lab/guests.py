"""Lab guests: define and start them, set their load, find and remove them.

A lab guest boots the lab image (no disk, no network) and runs loadd. Its load is set by
writing a command to its serial console through libvirt's console stream, so it works
over the same URI as everything else and after any number of live migrations. The last
requested load is also kept in the guest's metadata, which travels with the guest.
"""

import re
import time
import uuid
from xml.sax.saxutils import escape, quoteattr

import libvirt

from .connection import parse_xml, run_event_loop
from .hosts import LabError

LAB_METADATA_NS = "https://github.com/kvmops/kvmops.virt/lab/1"
_LAB_METADATA_KEY = "kvmopslab"
_REPLY = rb"kvmops-lab: (ok load=(\d+) dirty=(\d+)|error [^\r\n#]*) #%s\r?\n"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def ensure_event_loop():
    """libvirt's default event loop, shared with the collection's event sources in one process.

    Without it a remote connection reads incoming console data only while another call
    is in flight, so a non-blocking console stream would stay empty. It must run before
    the connections that use streams are opened.
    """
    run_event_loop()


def validate_name(name):
    if not _NAME.match(name):
        raise LabError(f"guest name {name!r}: use letters, digits, '.', '_' or '-' (at most 63)")


# The QEMU guest agent's virtio-serial channel; libvirt picks the host side's socket path.
_AGENT_CHANNEL = """
    <channel type='unix'>
      <source mode='bind'/>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>"""


def guest_xml(name, layout, vmlinuz, initrd, vcpus=1, memory_mib=256, load=0, agent=False, max_vcpus=None):
    """Domain XML of a lab guest. TCG (type='qemu'): a Linux kernel hangs at early boot
    under the nested KVM of the machines this lab is built for. With ``agent`` it has the
    guest agent's channel, which the guest's agentd answers on (host name: the guest's name).
    With ``max_vcpus`` above ``vcpus`` it can take more vCPUs live (hot-plug)."""
    validate_name(name)
    if not 0 <= load <= 100:
        raise LabError(f"load must be 0..100 %, got {load}")
    max_vcpus = max(int(vcpus), int(max_vcpus or vcpus))
    serial_log = layout.serial_log(name)
    cmdline = f"console=ttyS0 panic=-1 quiet kvmops.load={load}" + (f" kvmops.hostname={name}" if agent else "")
    return f"""<domain type='qemu'>
  <name>{escape(name)}</name>
  <memory unit='MiB'>{int(memory_mib)}</memory>
  <vcpu current='{int(vcpus)}'>{max_vcpus}</vcpu>
  <metadata>
    <{_LAB_METADATA_KEY}:guest xmlns:{_LAB_METADATA_KEY}={quoteattr(LAB_METADATA_NS)}><load>{load}</load><dirty>0</dirty></{_LAB_METADATA_KEY}:guest>
  </metadata>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{escape(str(vmlinuz))}</kernel>
    <initrd>{escape(str(initrd))}</initrd>
    <cmdline>{escape(cmdline)}</cmdline>
  </os>
  <features><acpi/></features>
  <cpu mode='custom' match='exact'><model fallback='allow'>qemu64</model></cpu>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='pty'>
      <log file={quoteattr(str(serial_log))} append='on'/>
      <target port='0'/>
    </serial>
    <console type='pty'><target type='serial' port='0'/></console>{_AGENT_CHANNEL if agent else ""}
    <memballoon model='none'/>
  </devices>
</domain>"""


def create_guest(conn, name, layout, vmlinuz, initrd, vcpus=1, memory_mib=256, load=0, ready_timeout=120,
                 agent=False, max_vcpus=None):
    """Define and start a lab guest; returns once loadd has confirmed its load on the console."""
    xml = guest_xml(name, layout, vmlinuz, initrd, vcpus, memory_mib, load, agent, max_vcpus)
    layout.guests_dir.mkdir(parents=True, exist_ok=True)
    layout.serial_log(name).unlink(missing_ok=True)  # a new guest starts a new log
    dom = conn.defineXML(xml)
    try:
        dom.create()
        set_load(dom, load=load, timeout=ready_timeout)
    except (libvirt.libvirtError, LabError):
        # a guest that never became ready is removed, not left half-made
        remove_guest(dom)
        raise
    return dom


def remove_guest(dom):
    if dom.isActive():
        dom.destroy()
    # snapshot metadata would block the undefine; a test may have left some
    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA if dom.snapshotNum(0) else 0)


def send_command(dom, command, timeout=30, retry_every=2.0):
    """Write one loadd command on the guest's console and return (load, dirty) from its reply.

    The command is re-sent every retry_every seconds until the reply comes (commands are
    absolute settings, so repeating one is harmless): right after boot the guest may not
    read its console yet, and QEMU only passes a console's output on once it has noticed
    the new client.
    """
    ensure_event_loop()
    tag = uuid.uuid4().hex[:12]
    expected = re.compile(_REPLY % tag.encode())
    conn = dom.connect()
    stream = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
    dom.openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
    received = b""
    try:
        deadline = time.monotonic() + timeout
        next_send = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= next_send:
                _send_all(stream, f"{command} #{tag}\n".encode("ascii"), deadline)
                next_send = time.monotonic() + retry_every
            chunk = stream.recv(4096)
            if chunk == -2:  # nothing yet
                time.sleep(0.05)
                continue
            if not chunk:
                raise LabError(f"{dom.name()}: console closed while waiting for a reply to {command!r}")
            received = (received + chunk)[-8192:]
            reply = expected.search(received)
            if reply and reply.group(2) is not None:
                return int(reply.group(2)), int(reply.group(3))
            if reply:
                raise LabError(f"{dom.name()}: guest refused {command!r}: {reply.group(1).decode(errors='replace')}")
        raise LabError(f"{dom.name()}: no reply to {command!r} on the console within {timeout} s")
    finally:
        try:
            stream.abort()
        except libvirt.libvirtError:
            pass


def _send_all(stream, data, deadline):
    while data:
        sent = stream.send(data)
        if sent == -2:
            if time.monotonic() >= deadline:
                raise LabError("console did not accept input")
            time.sleep(0.05)
            continue
        data = data[sent:]


def set_load(dom, load=None, dirty=None, timeout=30):
    """Set the guest's CPU load (percent of each vCPU) and/or memory dirtying (MiB/s)."""
    result = None
    if load is not None:
        if not 0 <= load <= 100:
            raise LabError(f"load must be 0..100 %, got {load}")
        result = send_command(dom, f"load {int(load)}", timeout)
    if dirty is not None:
        if not 0 <= dirty <= 4096:
            raise LabError(f"dirty must be 0..4096 MiB/s, got {dirty}")
        result = send_command(dom, f"dirty {int(dirty)}", timeout)
    if result is None:
        result = send_command(dom, "status", timeout)
    _record_settings(dom, *result)
    return result


def _record_settings(dom, load, dirty):
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    if dom.isActive():
        flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
    if not dom.isPersistent():
        flags &= ~libvirt.VIR_DOMAIN_AFFECT_CONFIG
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                    f"<guest><load>{int(load)}</load><dirty>{int(dirty)}</dirty></guest>",
                    _LAB_METADATA_KEY, LAB_METADATA_NS, flags)


def recorded_settings(dom):
    """(load, dirty) last set through the lab, or (None, None) for a guest it did not make."""
    try:
        text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, LAB_METADATA_NS, 0)
    except libvirt.libvirtError:
        return None, None
    root = parse_xml(text, f"lab metadata of {dom.name()}")
    return tuple(int(root.findtext(tag)) if (root.findtext(tag) or "").isdigit() else None
                 for tag in ("load", "dirty"))


def find_guest(connections, name):
    """Return (host_name, domain) for every lab host that defines or runs the guest."""
    found = []
    for host_name, conn in connections.items():
        try:
            found.append((host_name, conn.lookupByName(name)))
        except libvirt.libvirtError as error:
            if error.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
    return found
