# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Guest snapshots: take, describe, make current, revert to and delete them.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

The collection takes *internal* snapshots only: libvirt stores them inside the guest's
qcow2 images (with the memory state, for a running or paused guest), and QEMU can both
revert to and delete them on every libvirt the collection supports (libvirt 9.0 can do
neither with external snapshots).

``plan(conn, request)`` reads the hypervisor and returns a ``SnapshotPlan``: whether the
run changes anything, the before and after views, and the one libvirt call that makes
the change. Every check happens while planning, so an error never leaves anything
changed; check mode stops after planning and reports the plan's views.
"""

from __future__ import annotations

import re
import time
from xml.etree import ElementTree

from ansible_collections.kvmops.virt.plugins.module_utils import guests
from ansible_collections.kvmops.virt.plugins.module_utils.changes import resource_diff
from ansible_collections.kvmops.virt.plugins.module_utils.connection import redact_uri
from ansible_collections.kvmops.virt.plugins.module_utils.guest_xml import power_state
from ansible_collections.kvmops.virt.plugins.module_utils.safe_xml import parse_xml, sub_element, to_xml

try:
    import libvirt
except ImportError:
    libvirt = None

STATES = ("present", "absent", "reverted", "listed")

# libvirt's virDomainState numbers, and the state names of snapshot XML, as the collection
# names guest states everywhere (the guest module's power states).
_SNAPSHOT_STATES = {"nostate": "unknown", "running": "running", "blocked": "running", "paused": "paused",
                    "shutdown": "stopping", "shutoff": "stopped", "crashed": "crashed",
                    "pmsuspended": "suspended", "disk-snapshot": "disk-snapshot"}

# libvirt keeps a snapshot's metadata in "<name>.xml" and rewrites it through a temporary
# "<name>.xml.new", so a name of 248 bytes or more fails *after* QEMU has stored the
# snapshot in the images, leaving an orphan there. A round limit well below that.
MAX_NAME_BYTES = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_QEMU_ID = re.compile(r"[0-9]+")


class SnapshotError(Exception):
    """A request that cannot be met; str() says what and where. Nothing has been changed."""


class SnapshotRequest:
    """The module's options, checked for combinations that mean nothing."""

    def __init__(self, guest, name=None, state="present", description=None, memory=None, current=False):
        self.guest = guest
        self.name = name
        self.state = state
        self.description = description
        self.memory = memory
        self.current = current

    @classmethod
    def from_params(cls, params):
        return cls(params["guest"], params.get("name"), params.get("state") or "present",
                   params.get("description"), params.get("memory"), bool(params.get("current")))

    def check(self):
        if not self.guest:
            raise SnapshotError("guest: the guest's name must not be empty")
        if self.state not in STATES:
            raise SnapshotError("state: %r is not one of %s" % (self.state, ", ".join(STATES)))
        if self.state != "listed" and not self.name:
            raise SnapshotError("name: state=%s needs the snapshot's name" % self.state)
        if self.state != "present":
            for option, value in (("description", self.description), ("memory", self.memory)):
                if value is not None:
                    raise SnapshotError("%s: only applies with state=present, not state=%s" % (option, self.state))
        if self.current and self.state not in ("present", "reverted"):
            raise SnapshotError("current: only applies with state=present (a revert makes the snapshot "
                                "current anyway), not state=%s" % self.state)


# ---------------------------------------------------------------- names


def check_name_to_create(name):
    """SnapshotError unless libvirt and QEMU can create, revert to and delete a snapshot called ``name``."""
    if not name or not name.strip():
        raise SnapshotError("name: a snapshot name must not be empty or blank")
    if "/" in name:
        raise SnapshotError("name: %r contains '/', which libvirt refuses in snapshot names" % name)
    if name.startswith("."):
        raise SnapshotError("name: %r starts with '.', which libvirt refuses in snapshot names" % name)
    if _CONTROL.search(name):
        raise SnapshotError("name: %r contains control characters (such as a newline or tab)" % name)
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise SnapshotError("name: %r is %d bytes long (UTF-8); snapshot names may have at most %d"
                            % (name, len(name.encode("utf-8")), MAX_NAME_BYTES))
    check_name_to_revert(name)


def check_name_to_revert(name):
    """SnapshotError for names that QEMU takes, but then reverts to wrongly or not at all."""
    if '"' in name or "\\" in name:
        raise SnapshotError("name: %r contains '\"' or '\\'; QEMU stores such a snapshot but cannot load it "
                            "back reliably (with libvirt 9.0 a revert to it failed and left the guest stopped)" % name)
    if _QEMU_ID.fullmatch(name):
        raise SnapshotError("name: %r is only digits; QEMU looks internal snapshots up by their numeric ID "
                            "before their name, so reverting to it could restore another snapshot" % name)


# ---------------------------------------------------------------- reading


guest_state = power_state


def find_guest(conn, name):
    """The guest called ``name``; SnapshotError when the hypervisor has none."""
    domain = guests.find_guest(conn, name)
    if domain is None:
        raise SnapshotError("guest %s does not exist on %s" % (name, redact_uri(conn.uri)))
    return domain


def find_snapshot(conn, domain, name):
    """The guest's snapshot called ``name``, or None."""
    with conn.operation("look up snapshot %s of guest %s" % (name, domain.name())):
        try:
            return domain.snapshotLookupByName(name, 0)
        except libvirt.libvirtError as error:
            if error.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
                raise
    return None


def _iso_time(timestamp):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp)) if timestamp is not None else None


def snapshot_facts(snapshot):
    """What the module returns about one snapshot (see RETURN of the snapshot module)."""
    root = parse_xml(snapshot.getXMLDesc(0), "snapshot XML")
    libvirt_state = root.findtext("state")
    memory = root.find("memory")
    if memory is not None and memory.get("snapshot"):
        has_memory = memory.get("snapshot") != "no"
    else:  # snapshots from before libvirt wrote <memory>: full system ones had it
        has_memory = libvirt_state in ("running", "blocked", "paused")
    created = root.findtext("creationTime")
    timestamp = int(created) if created and created.strip().isdigit() else None
    return dict(
        name=root.findtext("name"),
        description=root.findtext("description") or None,
        creation_time=_iso_time(timestamp),
        creation_timestamp=timestamp,
        state=_SNAPSHOT_STATES.get(libvirt_state, libvirt_state),
        memory=has_memory,
        current=bool(snapshot.isCurrent(0)),
        parent=root.findtext("parent/name"),
        disks=[dict(name=disk.get("name"), snapshot=disk.get("snapshot") or "internal")
               for disk in root.iterfind("disks/disk")],
    )


def _depth(facts, by_name):
    depth, parent, seen = 0, facts["parent"], set()
    while parent in by_name and parent not in seen:
        seen.add(parent)
        depth += 1
        parent = by_name[parent]["parent"]
    return depth


def list_snapshots(conn, domain):
    """Facts of every snapshot of the guest, oldest first (a parent before its children)."""
    with conn.operation("list the snapshots of guest %s" % domain.name()):
        facts = [snapshot_facts(snapshot) for snapshot in domain.listAllSnapshots(0)]
    by_name = {fact["name"]: fact for fact in facts}
    # creation times have whole seconds only: the tree orders snapshots taken in one second
    return sorted(facts, key=lambda fact: (fact["creation_timestamp"] or 0, _depth(fact, by_name), fact["name"]))


def snapshot_view(facts):
    """The diff view of a snapshot: its facts without the creation time, which only the real run knows."""
    if facts is None:
        return None
    return {key: value for key, value in facts.items() if key not in ("creation_time", "creation_timestamp")}


def current_snapshot_name(snapshots):
    return next((fact["name"] for fact in snapshots if fact["current"]), None)


# ---------------------------------------------------------------- what a new snapshot holds


def _disk_has_source(disk):
    source = disk.find("source")
    return source is not None and any(source.get(key) for key in ("file", "dev", "name", "volume", "dir"))


def planned_disks(domain_root):
    """[(target, format, captured)] for each disk, as libvirt decides which disks a snapshot holds.

    Read-only disks (CD-ROMs always are), empty drives and disks marked snapshot='no' are
    left out; every other disk is captured internally."""
    disks = []
    for disk in domain_root.iterfind("devices/disk"):
        target = disk.find("target")
        driver = disk.find("driver")
        readonly = disk.find("readonly") is not None or disk.get("device") == "cdrom"
        captured = not readonly and _disk_has_source(disk) and disk.get("snapshot") != "no"
        disks.append((target.get("dev") if target is not None else None,
                      driver.get("type") if driver is not None else None, captured))
    return disks


def check_guest_can_snapshot(domain, domain_root, memory):
    """SnapshotError unless every captured disk is qcow2 and there is at least one."""
    captured = [(target, fmt) for target, fmt, is_captured in planned_disks(domain_root) if is_captured]
    kind = "a snapshot with memory" if memory else "a disk-only snapshot"
    if not captured:
        raise SnapshotError("guest %s has no writable disk, so it cannot have %s: internal snapshots, memory "
                            "state included, are stored inside the guest's qcow2 disk images"
                            % (domain.name(), kind))
    not_qcow2 = ["%s (%s)" % (target, fmt or "no format given, so raw") for target, fmt in captured if fmt != "qcow2"]
    if not_qcow2:
        raise SnapshotError("guest %s cannot have %s: disk %s is not qcow2. Internal snapshots, memory state "
                            "included, are stored inside qcow2 images, so every writable disk must be qcow2 "
                            "(read-only disks, CD-ROMs and disks with snapshot='no' are left out)"
                            % (domain.name(), kind, " and ".join(not_qcow2)))


def resolve_memory(domain, state, memory):
    """Whether the new snapshot holds the memory state: by default exactly when the guest runs."""
    active = bool(domain.isActive())
    if memory is None:
        return active
    if memory and not active:
        raise SnapshotError("memory: guest %s is %s, so it has no memory state to capture; start it first "
                            "or leave memory unset" % (domain.name(), state))
    if not memory and active:
        raise SnapshotError("memory: guest %s is %s, and libvirt takes internal snapshots of a running or "
                            "paused guest only together with its memory state; shut it down first or leave "
                            "memory unset" % (domain.name(), state))
    return memory


def snapshot_xml(name, description):
    """<domainsnapshot> for virDomainSnapshotCreateXML; libvirt fills in the rest from the guest."""
    root = ElementTree.Element("domainsnapshot")
    sub_element(root, "name", name)
    if description:
        sub_element(root, "description", description)
    return to_xml(root)


def redefined_xml(snapshot, description):
    """The snapshot's full XML (secrets included, as a redefinition needs) with a new description."""
    root = parse_xml(snapshot.getXMLDesc(libvirt.VIR_DOMAIN_SNAPSHOT_XML_SECURE), "snapshot XML")
    for old in root.findall("description"):
        root.remove(old)
    if description:
        element = ElementTree.Element("description")
        element.text = description
        root.insert(1, element)  # libvirt's own order: right after <name>
    return to_xml(root)


# ---------------------------------------------------------------- plans


class SnapshotPlan:
    """What one run does: ``changed``, the diff views, and ``apply()`` to do it.

    ``predicted`` is the snapshot as check mode reports it, ``guest_state`` the guest's
    state after the run, and ``observe(snapshots)`` the after view of a real run, read back
    from the hypervisor (for the diff: what libvirt made, not what was planned)."""

    def __init__(self, changed, before, after, action=None, predicted=None, guest_state=None, observe=None):
        self.changed = changed
        self.before = before
        self.after = after
        self.predicted = predicted
        self.guest_state = guest_state
        self._action = action
        self._observe = observe

    def apply(self):
        if self.changed and self._action is not None:
            self._action()

    def observed_after(self, snapshots):
        return self._observe(snapshots) if self._observe is not None else self.after


def _plan_present(conn, domain, request):
    existing = find_snapshot(conn, domain, request.name)
    if existing is not None:
        return _plan_update(conn, domain, existing, request)
    check_name_to_create(request.name)
    state = guest_state(domain)
    memory = resolve_memory(domain, state, request.memory)
    with conn.operation("read the definition of guest %s" % domain.name()):
        domain_root = parse_xml(domain.XMLDesc(0), "domain XML")
    check_guest_can_snapshot(domain, domain_root, memory)
    after = dict(
        name=request.name,
        description=request.description or None,
        state=state,
        memory=memory,
        current=True,  # libvirt makes every new snapshot the current one
        parent=current_snapshot_name(list_snapshots(conn, domain)),
        disks=[dict(name=target, snapshot="internal" if captured else "no")
               for target, _fmt, captured in planned_disks(domain_root)],
    )

    def create():
        with conn.operation("create snapshot %s of guest %s" % (request.name, domain.name())):
            domain.snapshotCreateXML(snapshot_xml(request.name, request.description), 0)

    return SnapshotPlan(True, None, after, create, predicted=dict(after, creation_time=None, creation_timestamp=None),
                        guest_state=state, observe=_observe_snapshot(request.name))


def _observe_snapshot(name):
    return lambda snapshots: snapshot_view(next((fact for fact in snapshots if fact["name"] == name), None))


def _plan_update(conn, domain, snapshot, request):
    with conn.operation("read snapshot %s of guest %s" % (request.name, domain.name())):
        facts = snapshot_facts(snapshot)
    if request.memory is not None and request.memory != facts["memory"]:
        raise SnapshotError("memory: snapshot %s of guest %s exists %s the memory state, and what a snapshot "
                            "holds cannot change; remove it (state=absent) or choose another name"
                            % (request.name, domain.name(), "with" if facts["memory"] else "without"))
    before = snapshot_view(facts)
    after = dict(before)
    if request.description is not None:
        after["description"] = request.description or None
    if request.current:
        after["current"] = True
    make_current = after["current"] and not before["current"]

    def redefine():
        flags = libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE
        if make_current:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT
        with conn.operation("update snapshot %s of guest %s" % (request.name, domain.name())):
            domain.snapshotCreateXML(redefined_xml(snapshot, after["description"]), flags)

    return SnapshotPlan(after != before, before, after, redefine, predicted=dict(facts, **after),
                        guest_state=guest_state(domain), observe=_observe_snapshot(request.name))


def _plan_absent(conn, domain, request):
    snapshot = find_snapshot(conn, domain, request.name)
    if snapshot is None:
        return SnapshotPlan(False, None, None, guest_state=guest_state(domain))
    with conn.operation("read snapshot %s of guest %s" % (request.name, domain.name())):
        before = snapshot_view(snapshot_facts(snapshot))

    def delete():
        # no flags: the snapshot's children stay, re-parented to its parent
        with conn.operation("delete snapshot %s of guest %s" % (request.name, domain.name())):
            snapshot.delete(0)

    return SnapshotPlan(True, before, None, delete, guest_state=guest_state(domain))


def revert_outcome(state_before, facts):
    """(revert flags, guest state afterwards): the guest keeps running, paused or stopped.

    A stopped guest reverted to a snapshot with memory comes back as it was captured
    (running or paused): restoring memory means resuming the guest."""
    if state_before == "paused":
        return libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED, "paused"
    if state_before != "stopped":
        return libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING, "running"
    if facts["memory"]:
        return 0, "paused" if facts["state"] == "paused" else "running"
    return 0, "stopped"


def _plan_reverted(conn, domain, request):
    snapshot = find_snapshot(conn, domain, request.name)
    if snapshot is None:
        names = [fact["name"] for fact in list_snapshots(conn, domain)]
        raise SnapshotError("snapshot %s of guest %s does not exist on %s, so there is nothing to revert to "
                            "(its snapshots: %s)" % (request.name, domain.name(), redact_uri(conn.uri),
                                                     ", ".join(names) or "none"))
    check_name_to_revert(request.name)
    with conn.operation("read snapshot %s of guest %s" % (request.name, domain.name())):
        facts = snapshot_facts(snapshot)
    state_before = guest_state(domain)
    flags, state_after = revert_outcome(state_before, facts)
    current = current_snapshot_name(list_snapshots(conn, domain))
    before = dict(guest=domain.name(), state=state_before, current_snapshot=current, reverted_to=None)
    after = dict(guest=domain.name(), state=state_after, current_snapshot=request.name, reverted_to=request.name)

    def revert():
        with conn.operation("revert guest %s to snapshot %s" % (domain.name(), request.name)):
            domain.revertToSnapshot(snapshot, flags)
            _start_if_left_stopped(domain, state_after)

    def observe(snapshots):
        return dict(after, state=guest_state(domain), current_snapshot=current_snapshot_name(snapshots))

    # Always a change: a guest diverges from its snapshot as soon as it runs, and nothing
    # tells whether it still is as the snapshot left it.
    return SnapshotPlan(True, before, after, revert, predicted=dict(facts, current=True),
                        guest_state=state_after, observe=observe)


def _start_if_left_stopped(domain, state_after):
    # Not every driver starts the guest when REVERT_RUNNING/PAUSED meets a snapshot
    # without memory (QEMU does; libvirt's test driver leaves it stopped), and the module
    # promises the state: a running guest stays running.
    if state_after != "stopped" and not domain.isActive():
        domain.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED if state_after == "paused" else 0)


def plan(conn, request):
    """(guest, SnapshotPlan) for ``request``; raises SnapshotError before anything changes."""
    request.check()
    domain = find_guest(conn, request.guest)
    planners = dict(present=_plan_present, absent=_plan_absent, reverted=_plan_reverted)
    if request.state in planners:
        return domain, planners[request.state](conn, domain, request)
    return domain, SnapshotPlan(False, None, None, guest_state=guest_state(domain))


def run(conn, request, check_mode=False, diff=False):
    """Plan, apply unless in check mode, and return the module's result."""
    domain, snapshot_plan = plan(conn, request)
    if check_mode:
        snapshots = list_snapshots(conn, domain)
        after = snapshot_plan.after
        state = snapshot_plan.guest_state
        snapshot = snapshot_plan.predicted if snapshot_plan.changed else _named(snapshots, request.name)
    else:
        snapshot_plan.apply()
        snapshots = list_snapshots(conn, domain)
        after = snapshot_plan.observed_after(snapshots)
        state = guest_state(domain)
        snapshot = _named(snapshots, request.name)
    result = dict(changed=snapshot_plan.changed, snapshot=snapshot, snapshots=snapshots, guest_state=state)
    if diff:
        result["diff"] = resource_diff(snapshot_plan.before, after)
    return result


def _named(snapshots, name):
    return next((fact for fact in snapshots if fact["name"] == name), None) if name else None
