"""kvmops.virt.guest on libvirt's test driver: definition, idempotence, check mode, errors.

What the test driver cannot do (boot a kernel, hot-plug, balloon, start paused, clone
real images, cloud-init seen by a guest) is covered in tests/integration/test_guest_on_lab.py."""

import hashlib
import json
import re

import libvirt
import pytest

from ansible_collections.kvmops.virt.plugins.module_utils.changes import changed_keys

URI = "test:///default"
POOL = "default-pool"


@pytest.fixture
def conn(test_driver_state):
    return test_driver_state


@pytest.fixture
def guest(conn, request):
    """A unique guest name; the guest and its volumes are removed after the test."""
    words = re.sub(r"[^a-z0-9]+", "-", request.node.originalname[5:].lower())[:40].strip("-")
    name = "t-%s-%s" % (words, hashlib.sha256(request.node.name.encode()).hexdigest()[:6])
    yield name
    for domain in conn.listAllDomains():
        if domain.name() == name or domain.name().startswith(name + "-"):
            if domain.isActive():
                domain.destroy()
            domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA if domain.snapshotNum() else 0)
    pool = conn.storagePoolLookupByName(POOL)
    for volume in pool.listAllVolumes():
        if volume.name().startswith(name):
            volume.delete()


def volumes(conn):
    return sorted(conn.storagePoolLookupByName(POOL).listVolumes())


def guest_args(name, **options):
    args = dict(uri=URI, name=name, vcpus=2, memory="512 MiB",
                disks=[dict(pool=POOL, size="1 GiB")], interfaces=[dict(network="default")],
                tags=dict(role="web", tier=2, migratable=False))
    args.update(options)
    return args


def test_create_then_nothing_to_do(run_module, conn, guest):
    args = guest_args(guest, state="running")
    first = run_module("guest", args)
    assert first["changed"] is True, first
    assert first["actions"] == [f"created volume {guest}-vda.qcow2 in pool {POOL} (1 GiB)",
                                f"defined guest {guest}", f"started guest {guest}"]
    created = first["guest"]
    assert created["state"] == "running" and created["vcpus"] == 2 and created["memory"] == "512 MiB"
    assert created["max_memory"] == "512 MiB" and created["max_vcpus"] == 2
    assert created["tags"] == {"role": "web", "tier": 2, "migratable": False}
    assert created["disks"][0]["volume"] == f"{guest}-vda.qcow2" and created["disks"][0]["size"] == "1 GiB"
    assert created["interfaces"][0]["mac"].startswith("52:54:00:")
    assert conn.lookupByName(guest).isActive()

    second = run_module("guest", args)
    assert second["changed"] is False, second["actions"]
    assert second["actions"] == []
    assert second["diff"]["before"] == second["diff"]["after"]
    assert second["guest"]["uuid"] == created["uuid"]
    assert second["guest"]["interfaces"] == created["interfaces"]


def test_check_mode_changes_nothing_and_predicts_the_real_diff(run_module, conn, guest):
    args = guest_args(guest, state="running")
    before = volumes(conn)
    predicted = run_module("guest", args, check=True)
    assert predicted["changed"] is True
    assert guest not in [domain.name() for domain in conn.listAllDomains()]
    assert volumes(conn) == before
    real = run_module("guest", args)
    assert real["diff"] == predicted["diff"]
    assert predicted["diff"]["before"] == {}
    # the predicted MAC is the one the guest got
    assert predicted["guest"]["interfaces"] == real["guest"]["interfaces"]

    update = dict(args, vcpus=1, tags=dict(role="db"))
    predicted = run_module("guest", update, check=True)
    assert conn.lookupByName(guest).info()[3] == 2  # still 2 vCPUs
    real = run_module("guest", update)
    assert real["diff"] == predicted["diff"]
    assert changed_keys(real["diff"]["before"], real["diff"]["after"]) == ["tags", "vcpus"]


def test_running_guest_takes_vcpus_and_memory_live(run_module, conn, guest):
    run_module("guest", guest_args(guest, state="running", vcpus=1, max_vcpus=4, memory=512, max_memory="1 GiB"))
    result = run_module("guest", guest_args(guest, vcpus=3, max_vcpus=4, memory="768 MiB", max_memory="1 GiB"))
    assert result["changed"] is True
    assert f"set 3 vCPUs on running guest {guest}" in result["actions"]
    assert f"set memory to 768 MiB on running guest {guest}" in result["actions"]
    assert result["restart_required"] is False
    state, _max_memory, memory_kib, vcpus, _cpu_time = conn.lookupByName(guest).info()
    assert (state, vcpus, memory_kib) == (libvirt.VIR_DOMAIN_RUNNING, 3, 768 * 1024)
    inactive = conn.lookupByName(guest).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert "<vcpu placement='static' current='3'>4</vcpu>" in inactive  # and persistently


def test_what_cannot_change_live_waits_for_a_restart(run_module, conn, guest):
    run_module("guest", guest_args(guest, state="running", vcpus=2))
    uuid = conn.lookupByName(guest).UUIDString()
    args = guest_args(guest, vcpus=2, max_vcpus=8)
    result = run_module("guest", args)
    assert result["changed"] is True and result["restart_required"] is True
    assert result["restart_pending"] == ["max_vcpus"]
    assert conn.lookupByName(guest).isActive()  # not restarted without being asked

    again = run_module("guest", args)
    assert again["changed"] is False and again["restart_required"] is True

    predicted = run_module("guest", dict(args, restart="if_needed"), check=True)
    assert predicted["changed"] is True and conn.lookupByName(guest).isActive()
    restarted = run_module("guest", dict(args, restart="if_needed"))
    assert restarted["actions"][0].startswith(f"shut down guest {guest} (ACPI)")
    assert restarted["actions"][1] == f"started guest {guest}"
    assert restarted["restart_required"] is False and restarted["guest"]["state"] == "running"
    assert conn.lookupByName(guest).UUIDString() == uuid


def test_macs_stay_when_nics_are_added_and_changed(run_module, guest):
    first = run_module("guest", guest_args(guest))["guest"]["interfaces"][0]["mac"]
    two = run_module("guest", guest_args(guest, interfaces=[dict(network="default"), dict(network="default")]))
    macs = [nic["mac"] for nic in two["guest"]["interfaces"]]
    assert macs[0] == first and macs[1] != first and macs[1].startswith("52:54:00:")
    nics = [dict(network="default", model="e1000"), dict(network="default")]
    remodelled = run_module("guest", guest_args(guest, interfaces=nics))
    assert [nic["mac"] for nic in remodelled["guest"]["interfaces"]] == macs
    assert remodelled["guest"]["interfaces"][0]["model"] == "e1000"
    chosen = run_module("guest", guest_args(guest, interfaces=[dict(network="default", mac="52:54:00:AA:BB:CC")]))
    assert [nic["mac"] for nic in chosen["guest"]["interfaces"]] == ["52:54:00:aa:bb:cc"]


def test_tags_keep_their_types_and_purge_is_optional(run_module, conn, guest):
    run_module("guest", guest_args(guest))
    merged = run_module("guest", dict(uri=URI, name=guest, tags=dict(env="prod"), purge_tags=False))
    assert merged["guest"]["tags"] == {"role": "web", "tier": 2, "migratable": False, "env": "prod"}
    assert 'type="bool">false</kvmops:tag>' in conn.lookupByName(guest).XMLDesc()
    purged = run_module("guest", dict(uri=URI, name=guest, tags=dict(env="prod")))
    assert purged["guest"]["tags"] == {"env": "prod"}
    assert run_module("guest", dict(uri=URI, name=guest, tags=dict(env="prod")))["changed"] is False


def test_power_states_and_their_waits(run_module, conn, guest):
    run_module("guest", guest_args(guest, state="running"))
    paused = run_module("guest", dict(uri=URI, name=guest, state="paused"))
    assert paused["actions"] == [f"paused guest {guest}"] and paused["guest"]["state"] == "paused"
    refused = run_module("guest", dict(uri=URI, name=guest, state="stopped"))
    assert refused["failed"] and "cannot react to an ACPI shutdown; set force: true" in refused["msg"]
    assert conn.lookupByName(guest).state()[0] == libvirt.VIR_DOMAIN_PAUSED  # left as it was
    resumed = run_module("guest", dict(uri=URI, name=guest, state="running"))
    assert resumed["actions"] == [f"resumed guest {guest}"]
    stopped = run_module("guest", dict(uri=URI, name=guest, state="stopped"))
    assert stopped["guest"]["state"] == "stopped" and "(ACPI)" in stopped["actions"][0]
    assert run_module("guest", dict(uri=URI, name=guest, state="stopped"))["changed"] is False
    predicted = run_module("guest", dict(uri=URI, name=guest, state="running"), check=True)
    assert predicted["diff"]["before"]["state"] == "stopped" and predicted["diff"]["after"]["state"] == "running"
    assert not conn.lookupByName(guest).isActive()


def test_absent_removes_the_guest_and_only_its_own_storage(run_module, conn, guest):
    shared = conn.storagePoolLookupByName(POOL).createXML(
        f"<volume><name>{guest}-shared.img</name><capacity unit='MiB'>8</capacity></volume>")
    run_module("guest", guest_args(guest, state="running", disks=[
        dict(pool=POOL, size=1), dict(pool=POOL, name=f"{guest}-shared.img", readonly=True)]))
    run_module("guest", guest_args(guest + "-other", disks=[dict(pool=POOL, size=1)]))
    predicted = run_module("guest", dict(uri=URI, name=guest, state="absent", remove_storage=True), check=True)
    assert predicted["changed"] is True and predicted["diff"]["after"] == {}
    assert conn.lookupByName(guest).isActive()
    removed = run_module("guest", dict(uri=URI, name=guest, state="absent", remove_storage=True))
    assert removed["actions"] == [f"undefined guest {guest}", f"powered off guest {guest}",
                                  f"deleted volume {guest}-vda.qcow2"]
    assert shared.name() in volumes(conn)  # read-only: kept
    assert f"{guest}-other-vda.qcow2" in volumes(conn)
    assert guest not in [domain.name() for domain in conn.listAllDomains()]
    assert run_module("guest", dict(uri=URI, name=guest, state="absent"))["changed"] is False


def test_a_disk_another_guest_uses_is_kept(run_module, conn, guest):
    run_module("guest", guest_args(guest, disks=[dict(pool=POOL, size=1)]))
    run_module("guest", guest_args(guest + "-twin", disks=[dict(pool=POOL, name=f"{guest}-vda.qcow2")]))
    removed = run_module("guest", dict(uri=URI, name=guest, state="absent", remove_storage=True))
    assert f"{guest}-vda.qcow2" in volumes(conn)
    assert any(f"used by guest {guest}-twin" in warning for warning in removed["warnings"]), removed


@pytest.mark.parametrize("mode, fmt", [("full", "qcow2"), ("linked", "qcow2")])
def test_clone_gets_new_identity_and_its_own_disks(run_module, conn, guest, mode, fmt):
    template = run_module("guest", guest_args(guest, tags=dict(role="template", os="debian")))["guest"]
    clone_name = guest + "-clone"
    args = dict(uri=URI, name=clone_name, clone_from=guest, clone_mode=mode, vcpus=1, tags=dict(role="web"),
                purge_tags=False, state="running")
    predicted = run_module("guest", args, check=True)
    clone = run_module("guest", args)
    assert clone["changed"] and clone["diff"] == predicted["diff"]
    assert clone["actions"][0].startswith(f"created volume {clone_name}-vda.qcow2 in pool {POOL} (")
    assert ("linked clone of" if mode == "linked" else "copy of") in clone["actions"][0]
    got = clone["guest"]
    assert got["uuid"] != template["uuid"]
    assert got["interfaces"][0]["mac"] != template["interfaces"][0]["mac"]
    assert got["disks"][0]["volume"] == f"{clone_name}-vda.qcow2" and got["disks"][0]["format"] == fmt
    assert got["tags"] == {"role": "web", "os": "debian"}
    assert got["vcpus"] == 1 and got["state"] == "running"
    assert run_module("guest", args)["changed"] is False  # exists now: clone_from is not used again


def test_clone_refuses_a_running_or_missing_template(run_module, guest):
    run_module("guest", guest_args(guest, state="running"))
    running = run_module("guest", dict(uri=URI, name=guest + "-c", clone_from=guest))
    assert running["failed"] and f"guest {guest} is running; stop it first" in running["msg"]
    missing = run_module("guest", dict(uri=URI, name=guest + "-c", clone_from="no-such-template"))
    assert missing["failed"] and "clone_from: guest no-such-template does not exist on test:///default" in missing["msg"]


DOMAIN_XML = """<domain type='test'>
  <name>{name}</name>
  <memory unit='GiB'>1</memory>
  <vcpu>2</vcpu>
  <os><type arch='i686'>hvm</type></os>
  <devices>
    <interface type='network'><source network='default'/></interface>
  </devices>
</domain>"""


def test_xml_is_compared_after_libvirt_normalises_it(run_module, conn, guest):
    xml = DOMAIN_XML.format(name=guest)
    first = run_module("guest", dict(uri=URI, name=guest, xml=xml))
    assert first["changed"] is True and first["guest"]["memory"] == "1 GiB"
    mac = first["guest"]["interfaces"][0]["mac"]
    second = run_module("guest", dict(uri=URI, name=guest, xml=xml))
    assert second["changed"] is False, second["diff"]
    changed = run_module("guest", dict(uri=URI, name=guest, xml=xml.replace("<vcpu>2</vcpu>", "<vcpu>3</vcpu>")))
    assert changed["changed"] is True and changed["guest"]["vcpus"] == 3
    assert changed["guest"]["interfaces"][0]["mac"] == mac  # kept although the XML has none
    fewer = run_module("guest", dict(uri=URI, name=guest, xml=xml.replace(
        "<interface type='network'><source network='default'/></interface>", "")))
    assert fewer["changed"] is True and fewer["guest"]["interfaces"] == []


@pytest.mark.parametrize("options", [dict(state="running"), dict(tags=dict(role="web")), dict(autostart=True)])
def test_a_guest_that_does_not_exist_is_not_invented(run_module, conn, guest, options):
    result = run_module("guest", dict(uri=URI, name=guest, **options))
    assert result["failed"]
    assert result["msg"] == (f"guest {guest} does not exist on test:///default; describe it (vcpus, memory, disks, "
                             "...) or give clone_from to create it")


@pytest.mark.parametrize("options, message", [
    (dict(memory="lots"), "memory: 'lots' is not a size"),
    (dict(memory="1.5 PiB"), "memory: unknown unit 'PiB'"),
    (dict(memory="1000 KiB"), "must be a whole number of MiB"),
    (dict(vcpus=4, max_vcpus=2), "max_vcpus (2) is less than vcpus (4)"),
    (dict(max_memory=256), "max_memory (256 MiB) is less than memory (512 MiB)"),
    (dict(interfaces=[dict(network="nonet")]), "interfaces[0]: network nonet does not exist on test:///default"),
    (dict(interfaces=[dict(network="default", mac="01:00:5e:00:00:01")]), "is a multicast address"),
    (dict(interfaces=[dict(network="default", mac="52:54:00:zz:00:01")]), "is not a MAC address"),
    (dict(disks=[dict(pool="nopool", size=1)]), "storage pool 'nopool' does not exist on test:///default"),
    (dict(disks=[dict(pool=POOL, size="500 GiB", format="raw")]), "only 100.0 GiB (107374182400 bytes) are available"),
    (dict(disks=[dict(pool=POOL, name="missing.qcow2")]), "does not exist; give size to create it"),
    (dict(disks=[dict(pool=POOL, size=1, backing="nothere.qcow2")]), "backing image nothere.qcow2 is not a volume"),
    (dict(disks=[dict(pool=POOL, size=1, target="vda"), dict(pool=POOL, size=1, target="vda")]),
     "target vda is used twice"),
    (dict(tags={"bad tag": 1}), "tags: 'bad tag' is not a valid tag name"),
    (dict(tags={"list": [1]}), "the value of 'list' must be a string, number or boolean"),
    (dict(cpu_mode="host-passthrough", virt_type="qemu"), "this hypervisor offers test for i686 guests, not qemu"),
    (dict(kernel="vmlinuz"), "kernel: 'vmlinuz' is not an absolute path"),
    (dict(cloud_init=dict(user_data=[1789])), "cloud_init.user_data must be a dict"),  # no_log: its parts are masked in messages
])
def test_bad_input_fails_before_anything_changes(run_module, conn, guest, options, message):
    before = volumes(conn)
    result = run_module("guest", guest_args(guest, **options))
    assert result["failed"], result
    assert message in result["msg"]
    assert guest not in [domain.name() for domain in conn.listAllDomains()]
    assert volumes(conn) == before


@pytest.mark.parametrize("name", ["bad/name", "-leading-dash", "x" * 65, "sp ace"])
def test_names_libvirt_or_the_inventory_would_choke_on_are_refused(run_module, conn, name):
    result = run_module("guest", guest_args(name))
    assert result["failed"] and f"name: {name!r} is not a usable guest name" in result["msg"]


@pytest.mark.parametrize("name", ["localhost", "LocalHost", "127.0.0.1", "10.1.2.3"])
def test_names_ansible_takes_for_the_controller_or_an_address_are_refused(run_module, conn, name):
    result = run_module("guest", guest_args(name))
    assert result["failed"] and f"name: {name!r} is not a usable guest name: Ansible would take" in result["msg"]
    assert name not in [domain.name() for domain in conn.listAllDomains()]


def test_max_below_existing_size_is_refused_and_guest_kept(run_module, conn, guest):
    run_module("guest", guest_args(guest, state="running", vcpus=4))
    xml = conn.lookupByName(guest).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    result = run_module("guest", dict(uri=URI, name=guest, max_vcpus=2))
    assert result["failed"] and "max_vcpus (2) is less than the guest's 4 vCPUs; set vcpus too" in result["msg"]
    assert conn.lookupByName(guest).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == xml


def test_a_failed_definition_deletes_the_volumes_it_created(run_module, conn, guest):
    before = volumes(conn)
    result = run_module("guest", guest_args(guest, boot=["bogus"]))
    assert result["failed"]
    assert result["msg"].startswith(f"Could not define guest {guest} on test:///default: ")
    assert result["msg"].endswith("; 1 new volume(s) deleted")
    assert volumes(conn) == before


def test_shrinking_a_disk_is_refused(run_module, guest):
    run_module("guest", guest_args(guest, disks=[dict(pool=POOL, size=2)]))
    result = run_module("guest", guest_args(guest, disks=[dict(pool=POOL, size=1)]))
    assert result["failed"] and "larger than size 1 GiB; shrinking a disk loses data" in result["msg"]


def test_unreachable_hypervisor_fails_with_the_uri(run_module, closed_port):
    uri = f"qemu+tcp://127.0.0.1:{closed_port}/system"
    result = run_module("guest", dict(uri=uri, name="web-1", connect_timeout=3, vcpus=1))
    assert result["failed"] and result["msg"].startswith(f"Could not open a connection on {uri}: ")


def test_absent_removes_a_guest_with_snapshots_and_a_managed_save(run_module, conn, guest):
    run_module("guest", guest_args(guest, state="running"))
    domain = conn.lookupByName(guest)
    domain.snapshotCreateXML("<domainsnapshot><name>before</name></domainsnapshot>", 0)
    domain.managedSave(0)
    assert domain.hasManagedSaveImage(0) and domain.snapshotNum(0) == 1
    removed = run_module("guest", dict(uri=URI, name=guest, state="absent"))
    assert removed["actions"] == [f"undefined guest {guest}"], removed
    assert guest not in [d.name() for d in conn.listAllDomains()]


def test_autostart_and_boot_order(run_module, conn, guest):
    args = guest_args(guest, autostart=True, boot=["network", "hd"])
    created = run_module("guest", args)
    assert created["guest"]["autostart"] is True and created["guest"]["boot"] == ["network", "hd"]
    assert conn.lookupByName(guest).autostart() == 1
    assert run_module("guest", args)["changed"] is False
    off = run_module("guest", dict(uri=URI, name=guest, autostart=False))
    assert off["actions"] == [f"disabled autostart of guest {guest}"]
    assert off["diff"]["before"]["autostart"] is True and off["diff"]["after"]["autostart"] is False


def test_bridges_backing_images_and_cdroms(run_module, conn, guest):
    pool = conn.storagePoolLookupByName(POOL)
    base = pool.createXML(f"<volume><name>{guest}-base.qcow2</name><capacity unit='GiB'>4</capacity>"
                          "<target><format type='qcow2'/></target></volume>", 0)
    iso = pool.createXML(f"<volume><name>{guest}-install.iso</name><capacity unit='MiB'>300</capacity>"
                         "</volume>", 0)
    args = guest_args(guest, interfaces=[dict(bridge="br0", model="e1000")], disks=[
        dict(pool=POOL, size=1, backing=f"{guest}-base.qcow2"),
        dict(path=iso.path(), device="cdrom"),
    ])
    created = run_module("guest", args)
    assert not created.get("failed"), created
    overlay, cdrom = created["guest"]["disks"]
    assert overlay["size"] == "4 GiB"  # an overlay is at least as large as its backing image
    assert cdrom == dict(target="sda", device="cdrom", bus="scsi", path=iso.path(), format="raw", readonly=True,
                         pool=POOL, volume=f"{guest}-install.iso", size="300 MiB")
    assert pool.storageVolLookupByName(f"{guest}-vda.qcow2").XMLDesc().count(base.path()) == 1
    xml = conn.lookupByName(guest).XMLDesc(0)
    assert "model='virtio-scsi'" in xml, xml  # the CD-ROM's bus
    assert created["guest"]["interfaces"][0]["type"] == "bridge"
    assert created["guest"]["interfaces"][0]["source"] == "br0"
    assert run_module("guest", args)["changed"] is False
    removed = run_module("guest", dict(uri=URI, name=guest, state="absent", remove_storage=True))
    assert f"deleted volume {guest}-vda.qcow2" in removed["actions"]
    assert {f"{guest}-base.qcow2", f"{guest}-install.iso"} <= set(volumes(conn))  # backing and read-only kept


def test_cloud_init_data_never_reaches_the_output(run_module, conn):
    """user_data and network_config often hold passwords: the invocation shown with -vvv and
    in AWX job events masks them; the diff shows the seed's digest, not its text."""
    secret, network_secret = "S3cret-pw-9917", "wpa-psk-7741"
    result = run_module("guest", guest_args("it-seeded", cloud_init=dict(
        user_data=dict(chpasswd=dict(list="root:" + secret)),
        network_config=f"version: 2\nwifis: {{wlan0: {{access-points: {{lab: {{password: {network_secret}}}}}}}}}\n")),
        check=True)
    assert not result.get("failed"), result
    assert result["changed"] and "diff" in result
    output = json.dumps(result)
    assert secret not in output and network_secret not in output
    assert "it-seeded" not in [domain.name() for domain in conn.listAllDomains()]
