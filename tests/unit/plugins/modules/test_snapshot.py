"""kvmops.virt.snapshot on libvirt's test driver: create, describe, make current, revert, delete.

Each test defines its own guest in the shared ``test:///default`` (unique name, a qcow2
disk and a read-only CD-ROM) and removes it with its snapshot metadata afterwards. The
test driver keeps snapshots as metadata only; that memory really comes back on a revert
is shown on the lab (tests/integration/test_snapshot.py).
"""

import json
import subprocess
import sys
import uuid
from pathlib import Path

import libvirt
import pytest
import yaml

from ansible_collections.kvmops.virt.plugins.module_utils.safe_xml import parse_xml, to_xml
from ansible_collections.kvmops.virt.plugins.modules import snapshot as snapshot_module

URI = "test:///default"
VIEW_KEYS = {"name", "description", "state", "memory", "current", "parent", "disks"}
SNAPSHOT_KEYS = VIEW_KEYS | {"creation_time", "creation_timestamp"}


def guest_xml(name, disks="qcow2"):
    """A test guest with a disk of format ``disks`` (None: no writable disk) and a read-only CD-ROM."""
    disk = "" if disks is None else f"""
    <disk type='file' device='disk'>
      <driver name='qemu' type='{disks}'/>
      <source file='/default-pool/{name}.img'/>
      <target dev='vda' bus='virtio'/>
    </disk>"""
    return f"""<domain type='test'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>{disk}
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='/default-pool/{name}.iso'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
  </devices>
</domain>"""


@pytest.fixture
def conn():
    handle = libvirt.open(URI)
    yield handle
    handle.close()


@pytest.fixture
def make_guest(conn, request):
    """make_guest(running=True, disks='qcow2') -> a new guest, undefined with its snapshots afterwards."""
    made = []

    def make(running=True, disks="qcow2"):
        name = "snap-%s-%s" % (request.node.name[5:30].replace("_", "-").strip("-"), uuid.uuid4().hex[:6])
        domain = conn.defineXML(guest_xml(name, disks))
        made.append(domain)
        if running:
            domain.create()
        return domain

    yield make
    for domain in made:
        if domain.isActive():
            domain.destroy()
        domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)


def snap(run_module, guest, check=False, **options):
    return run_module("snapshot", dict(uri=URI, guest=guest.name(), **options), check=check)


def ok(result):
    assert not result.get("failed"), result
    return result


def names(domain):
    return sorted(snapshot.getName() for snapshot in domain.listAllSnapshots())


def libvirt_parent(domain, name):
    root = parse_xml(domain.snapshotLookupByName(name).getXMLDesc(0))
    return root.findtext("parent/name")


def current_name(domain):
    return domain.snapshotCurrent().getName() if domain.hasCurrentSnapshot() else None


def state_name(domain):
    return {libvirt.VIR_DOMAIN_RUNNING: "running", libvirt.VIR_DOMAIN_PAUSED: "paused",
            libvirt.VIR_DOMAIN_SHUTOFF: "stopped"}[domain.state()[0]]


# ---------------------------------------------------------------- present


def test_live_snapshot_check_mode_then_real_then_no_change(run_module, make_guest):
    guest = make_guest()
    predicted = ok(snap(run_module, guest, check=True, name="before-upgrade", description="pre 2.4"))
    assert predicted["changed"] is True
    assert names(guest) == []  # check mode changed nothing

    made = ok(snap(run_module, guest, name="before-upgrade", description="pre 2.4"))
    assert made["changed"] is True
    assert made["diff"] == predicted["diff"]
    assert made["diff"]["before"] == {}
    snapshot = made["snapshot"]
    assert set(snapshot) == SNAPSHOT_KEYS
    assert snapshot["name"] == "before-upgrade" and snapshot["description"] == "pre 2.4"
    assert snapshot["state"] == "running" and snapshot["memory"] is True
    assert snapshot["current"] is True and snapshot["parent"] is None
    assert snapshot["disks"] == [{"name": "vda", "snapshot": "internal"}, {"name": "sda", "snapshot": "no"}]
    assert snapshot["creation_time"].endswith("Z") and isinstance(snapshot["creation_timestamp"], int)
    assert {key: predicted["snapshot"][key] for key in VIEW_KEYS} == {key: snapshot[key] for key in VIEW_KEYS}
    assert names(guest) == ["before-upgrade"]
    assert made["snapshots"] == [snapshot]
    assert made["guest_state"] == "running"

    again = ok(snap(run_module, guest, name="before-upgrade", description="pre 2.4"))
    assert again["changed"] is False
    assert again["diff"]["before"] == again["diff"]["after"]
    assert again["snapshot"] == snapshot
    again_checked = ok(snap(run_module, guest, check=True, name="before-upgrade"))
    assert again_checked["changed"] is False


def test_snapshot_of_a_stopped_guest_holds_its_disks_only(run_module, make_guest):
    guest = make_guest(running=False)
    predicted = ok(snap(run_module, guest, check=True, name="golden"))
    made = ok(snap(run_module, guest, name="golden"))
    assert made["diff"] == predicted["diff"]
    assert made["snapshot"]["state"] == "stopped" and made["snapshot"]["memory"] is False
    assert made["guest_state"] == "stopped" and not guest.isActive()
    assert ok(snap(run_module, guest, name="golden", memory=False))["changed"] is False


def test_snapshot_of_a_paused_guest_holds_its_memory(run_module, make_guest):
    guest = make_guest()
    guest.suspend()
    made = ok(snap(run_module, guest, name="paused-one", memory=True))
    assert made["snapshot"]["state"] == "paused" and made["snapshot"]["memory"] is True
    assert made["guest_state"] == "paused"


def test_new_snapshot_is_a_child_of_the_current_one(run_module, make_guest):
    guest = make_guest()
    ok(snap(run_module, guest, name="first"))
    predicted = ok(snap(run_module, guest, check=True, name="second"))
    assert predicted["diff"]["after"]["parent"] == "first"
    made = ok(snap(run_module, guest, name="second"))
    assert made["snapshot"]["parent"] == "first" == libvirt_parent(guest, "second")
    assert [item["current"] for item in made["snapshots"]] == [False, True]


def test_description_is_updated_in_place(run_module, make_guest):
    guest = make_guest()
    first = ok(snap(run_module, guest, name="base", description="old words"))["snapshot"]
    ok(snap(run_module, guest, name="later"))

    predicted = ok(snap(run_module, guest, check=True, name="base", description="new words"))
    assert predicted["changed"] is True
    assert guest.snapshotLookupByName("base").getXMLDesc(0).count("old words") == 1

    updated = ok(snap(run_module, guest, name="base", description="new words"))
    assert updated["changed"] is True
    assert updated["diff"] == predicted["diff"]
    assert updated["diff"]["before"]["description"] == "old words"
    assert updated["diff"]["after"] == dict(updated["diff"]["before"], description="new words")
    # only the description changed: same creation time, still not current, same children
    assert updated["snapshot"] == dict(first, description="new words", current=False)
    assert libvirt_parent(guest, "later") == "base" and current_name(guest) == "later"

    assert ok(snap(run_module, guest, name="base", description="new words"))["changed"] is False
    assert ok(snap(run_module, guest, name="base"))["changed"] is False  # not given: kept
    removed = ok(snap(run_module, guest, name="base", description=""))
    assert removed["changed"] is True and removed["snapshot"]["description"] is None
    assert "<description>" not in guest.snapshotLookupByName("base").getXMLDesc(0)


def test_current_makes_an_older_snapshot_current(run_module, make_guest):
    guest = make_guest()
    ok(snap(run_module, guest, name="base"))
    ok(snap(run_module, guest, name="later"))
    assert current_name(guest) == "later"

    predicted = ok(snap(run_module, guest, check=True, name="base", current=True))
    assert predicted["changed"] is True and current_name(guest) == "later"
    made = ok(snap(run_module, guest, name="base", current=True))
    assert made["diff"] == predicted["diff"]
    assert made["diff"]["before"]["current"] is False and made["diff"]["after"]["current"] is True
    assert current_name(guest) == "base"
    assert ok(snap(run_module, guest, name="base", current=True))["changed"] is False
    assert ok(snap(run_module, guest, name="later"))["changed"] is False  # current=false changes nothing
    assert current_name(guest) == "base"
    # the guest itself was not reverted, and the next snapshot hangs off "base"
    assert ok(snap(run_module, guest, name="branch"))["snapshot"]["parent"] == "base"


# ---------------------------------------------------------------- absent


def test_absent_deletes_and_keeps_the_children(run_module, make_guest):
    guest = make_guest()
    for name in ("a", "b", "c"):
        ok(snap(run_module, guest, name=name))
    predicted = ok(snap(run_module, guest, check=True, name="b", state="absent"))
    assert predicted["changed"] is True and names(guest) == ["a", "b", "c"]
    assert predicted["snapshot"] is None

    deleted = ok(snap(run_module, guest, name="b", state="absent"))
    assert deleted["changed"] is True
    assert deleted["diff"] == predicted["diff"]
    assert deleted["diff"]["before"]["name"] == "b" and deleted["diff"]["after"] == {}
    assert names(guest) == ["a", "c"]
    assert libvirt_parent(guest, "c") == "a"
    assert [(item["name"], item["parent"]) for item in deleted["snapshots"]] == [("a", None), ("c", "a")]
    assert deleted["snapshot"] is None

    again = ok(snap(run_module, guest, name="b", state="absent"))
    assert again["changed"] is False and again["diff"] == {"before": {}, "after": {}}


def test_deleting_the_current_snapshot_makes_its_parent_current(run_module, make_guest):
    guest = make_guest()
    ok(snap(run_module, guest, name="a"))
    ok(snap(run_module, guest, name="b"))
    deleted = ok(snap(run_module, guest, name="b", state="absent"))
    assert current_name(guest) == "a"
    assert [item["current"] for item in deleted["snapshots"]] == [True]


# ---------------------------------------------------------------- reverted


def test_revert_running_guest_keeps_it_running_and_always_reports_a_change(run_module, make_guest):
    guest = make_guest()
    ok(snap(run_module, guest, name="live"))
    ok(snap(run_module, guest, name="later"))

    predicted = ok(snap(run_module, guest, check=True, name="live", state="reverted"))
    assert predicted["changed"] is True
    assert predicted["diff"] == {
        "before": {"guest": guest.name(), "state": "running", "current_snapshot": "later", "reverted_to": None},
        "after": {"guest": guest.name(), "state": "running", "current_snapshot": "live", "reverted_to": "live"}}
    assert current_name(guest) == "later"  # check mode did not revert

    reverted = ok(snap(run_module, guest, name="live", state="reverted"))
    assert reverted["changed"] is True and reverted["diff"] == predicted["diff"]
    assert reverted["guest_state"] == "running" and state_name(guest) == "running"
    assert current_name(guest) == "live"
    assert reverted["snapshot"]["current"] is True
    assert guest.state()[1] == libvirt.VIR_DOMAIN_RUNNING_FROM_SNAPSHOT

    assert ok(snap(run_module, guest, name="live", state="reverted"))["changed"] is True


def test_revert_running_guest_to_a_disk_only_snapshot_leaves_it_running(run_module, make_guest):
    guest = make_guest(running=False)
    ok(snap(run_module, guest, name="cold"))
    guest.create()
    predicted = ok(snap(run_module, guest, check=True, name="cold", state="reverted"))
    assert predicted["guest_state"] == "running"
    reverted = ok(snap(run_module, guest, name="cold", state="reverted"))
    assert reverted["diff"] == predicted["diff"]
    assert reverted["guest_state"] == "running" and state_name(guest) == "running"


def test_revert_stopped_guest_to_a_disk_only_snapshot_leaves_it_stopped(run_module, make_guest):
    guest = make_guest(running=False)
    ok(snap(run_module, guest, name="cold"))
    reverted = ok(snap(run_module, guest, name="cold", state="reverted"))
    assert reverted["diff"]["after"]["state"] == "stopped"
    assert reverted["guest_state"] == "stopped" and not guest.isActive()


def test_revert_stopped_guest_to_a_memory_snapshot_resumes_it(run_module, make_guest):
    guest = make_guest()
    ok(snap(run_module, guest, name="live"))
    guest.destroy()
    predicted = ok(snap(run_module, guest, check=True, name="live", state="reverted"))
    assert predicted["diff"]["before"]["state"] == "stopped" and predicted["diff"]["after"]["state"] == "running"
    assert not guest.isActive()
    reverted = ok(snap(run_module, guest, name="live", state="reverted"))
    assert reverted["diff"] == predicted["diff"]
    assert state_name(guest) == "running"


def test_revert_paused_guest_keeps_it_paused(run_module, make_guest):
    guest = make_guest()
    ok(snap(run_module, guest, name="live"))
    guest.suspend()
    reverted = ok(snap(run_module, guest, name="live", state="reverted"))
    assert reverted["guest_state"] == "paused" and state_name(guest) == "paused"


# ---------------------------------------------------------------- listing and return values


def test_every_run_lists_all_snapshots_oldest_first(run_module, make_guest):
    guest = make_guest()
    for name in ("zeta", "alpha", "mid"):  # taken within one second: the tree gives the order
        ok(snap(run_module, guest, name=name))
    listed = ok(snap(run_module, guest, state="listed"))
    assert listed["changed"] is False and listed["snapshot"] is None
    assert [item["name"] for item in listed["snapshots"]] == ["zeta", "alpha", "mid"]
    assert [item["parent"] for item in listed["snapshots"]] == [None, "zeta", "alpha"]
    one = ok(snap(run_module, guest, state="listed", name="alpha"))
    assert one["snapshot"] == listed["snapshots"][1]
    assert ok(snap(run_module, guest, state="listed", name="nothing"))["snapshot"] is None
    assert ok(snap(run_module, guest, check=True, state="listed"))["snapshots"] == listed["snapshots"]


def test_returned_keys_are_documented(run_module, make_guest):
    documented = yaml.safe_load(snapshot_module.RETURN)
    guest = make_guest()
    result = ok(snap(run_module, guest, name="doc"))
    assert set(documented["snapshot"]["contains"]) == set(result["snapshot"]) == SNAPSHOT_KEYS
    assert set(documented) == {"snapshot", "snapshots", "guest_state"}
    assert set(documented) <= set(result)
    for sample in documented["snapshots"]["sample"]:
        assert set(sample) == SNAPSHOT_KEYS


def test_a_read_only_raw_disk_is_left_out(run_module, make_guest, conn):
    guest = make_guest(running=False)
    root = parse_xml(guest.XMLDesc(0))
    extra = parse_xml("<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
                      "<source file='/default-pool/ro.img'/><target dev='vdb' bus='virtio'/><readonly/></disk>")
    root.find("devices").append(extra)
    conn.defineXML(to_xml(root))
    made = ok(snap(run_module, guest, name="with-ro"))
    assert {disk["name"]: disk["snapshot"] for disk in made["snapshot"]["disks"]} == {
        "vda": "internal", "vdb": "no", "sda": "no"}


# ---------------------------------------------------------------- errors: before anything changes


@pytest.mark.parametrize("name, reason", [
    ("a/b", "contains '/'"),
    (".hidden", "starts with '.'"),
    ("two\nlines", "control characters"),
    ("1", "only digits"),
    ('say "hi"', "cannot load it"),
    ("back\\slash", "cannot load it"),
    ("x" * 201, "at most 200"),
    ("   ", "empty or blank"),
])
def test_unusable_names_are_refused(run_module, make_guest, name, reason):
    guest = make_guest()
    for check in (True, False):
        result = snap(run_module, guest, check=check, name=name)
        assert result["failed"] and reason in result["msg"], result
    assert names(guest) == []


def test_a_name_of_200_bytes_is_fine(run_module, make_guest):
    guest = make_guest()
    assert ok(snap(run_module, guest, name="é" * 100))["changed"] is True


def test_missing_guest_is_named_with_the_uri(run_module):
    result = run_module("snapshot", dict(uri=URI, guest="no-such-guest", name="x"))
    assert result["failed"]
    assert result["msg"] == "guest no-such-guest does not exist on test:///default"


@pytest.mark.parametrize("disks, message", [
    ("raw", "disk vda (raw) is not qcow2"),
    (None, "has no writable disk"),
])
@pytest.mark.parametrize("running", [True, False])
def test_guest_whose_disks_cannot_hold_a_snapshot_is_refused(run_module, make_guest, disks, message, running):
    guest = make_guest(running=running, disks=disks)
    for check in (True, False):
        result = snap(run_module, guest, check=check, name="x")
        assert result["failed"] and message in result["msg"], result
        assert result["msg"].startswith("guest %s" % guest.name())
        assert ("a snapshot with memory" if running else "a disk-only snapshot") in result["msg"]
    assert names(guest) == []
    assert guest.isActive() == running


def test_memory_must_match_the_guest_state(run_module, make_guest):
    stopped = make_guest(running=False)
    result = snap(run_module, stopped, name="x", memory=True)
    assert result["failed"] and "is stopped, so it has no memory state" in result["msg"]
    running = make_guest()
    result = snap(run_module, running, name="x", memory=False)
    assert result["failed"] and "only together with its memory state" in result["msg"]
    assert names(stopped) == names(running) == []


def test_memory_of_an_existing_snapshot_cannot_change(run_module, make_guest):
    guest = make_guest()
    ok(snap(run_module, guest, name="live"))
    guest.destroy()
    result = snap(run_module, guest, name="live", memory=False, description="other")
    assert result["failed"] and "exists with the memory state" in result["msg"]
    assert guest.snapshotLookupByName("live").getXMLDesc(0).count("<description>") == 0
    # not given: the existing snapshot is fine whatever the guest's state now
    assert ok(snap(run_module, guest, name="live"))["changed"] is False


def test_reverting_to_a_missing_snapshot_names_the_existing_ones(run_module, make_guest):
    guest = make_guest()
    ok(snap(run_module, guest, name="one"))
    result = snap(run_module, guest, name="two", state="reverted")
    assert result["failed"]
    assert result["msg"] == ("snapshot two of guest %s does not exist on test:///default, so there is nothing "
                             "to revert to (its snapshots: one)" % guest.name())
    assert state_name(guest) == "running" and current_name(guest) == "one"


@pytest.mark.parametrize("options, message", [
    (dict(name="x", state="absent", description="d"), "description: only applies with state=present"),
    (dict(name="x", state="reverted", memory=True), "memory: only applies with state=present"),
    (dict(name="x", state="absent", current=True), "current: only applies with state=present"),
    (dict(state="listed", current=True), "current: only applies with state=present"),
    (dict(state="present"), "state is present but all of the following are missing: name"),
    (dict(name="x", state="reverted", colour="blue"), "Unsupported parameters"),
])
def test_options_that_mean_nothing_are_refused(run_module, make_guest, options, message):
    guest = make_guest()
    result = snap(run_module, guest, **options)
    assert result["failed"] and message in result["msg"], result


# ---------------------------------------------------------------- through ansible itself


def test_module_runs_under_ansible_on_a_private_test_node(tmp_path, ansible_env):
    """One task on a private test node (each connection gets its own copy of the node)."""
    node = tmp_path / "node.xml"
    node.write_text("<node>%s</node>" % guest_xml("nodeguest"))
    command = [str(Path(sys.executable).parent / "ansible"), "localhost", "-c", "local", "-i", "localhost,",
               "-m", "kvmops.virt.snapshot", "-a", f"uri=test://{node} guest=nodeguest name=first", "--diff"]
    env = dict(ansible_env, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.partition(" => ")[2].split("\n---")[0])
    assert result["changed"] is True
    assert result["snapshot"]["name"] == "first" and result["snapshot"]["memory"] is True
    assert [item["name"] for item in result["snapshots"]] == ["first"]
