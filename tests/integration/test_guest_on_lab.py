"""kvmops.virt.guest on the real lab: clones that boot, power changes that wait, restarts
that roll back, and the fleet playbook (20 guests from one template) with its timings."""

import hashlib
import re
import subprocess
import time

import libvirt

from ansible_collections.kvmops.virt.plugins.module_utils.cloud_init import seed_texts
from ansible_collections.kvmops.virt.plugins.module_utils.connection import LibvirtConnection
from playbook_runner import TEMPLATE, run_playbook
from serial_log import SerialLog

HOST = "kvm1"


def wait_for_console(lab, name, pattern, timeout=120, after=0):
    """The first match of ``pattern`` in the guest's console log past offset ``after``."""
    deadline = time.monotonic() + timeout
    path = lab.layout.serial_log(name)
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace")[after:] if path.exists() else ""
        match = re.search(pattern, text)
        if match:
            return match
        time.sleep(0.5)
    raise AssertionError(f"{name} did not print {pattern!r} within {timeout} s")


def domain_state(uri, name):
    with LibvirtConnection(uri) as conn:
        return conn.handle.lookupByName(name).state()[0]


def test_a_linked_clone_boots(lab, run_module, clone):
    result = run_module("guest", dict(clone, state="running"))
    assert result["changed"] and not result.get("failed"), result
    assert result["guest"]["disks"][0]["path"].endswith(f"/{clone['name']}-vda.qcow2")
    wait_for_console(lab, clone["name"], r"kvmops-lab: booted")
    with LibvirtConnection(clone["uri"]) as conn:
        volume = conn.handle.storageVolLookupByPath(result["guest"]["disks"][0]["path"])
        assert f"<path>/var/lib/libvirt/images/{TEMPLATE}.qcow2</path>" in volume.XMLDesc()  # backed by it
    assert run_module("guest", dict(clone, state="running"))["changed"] is False


def test_running_guest_gets_vcpus_and_memory_live_and_sees_them(lab, run_module, clone):
    run_module("guest", dict(clone, state="running"))
    log = SerialLog(lab.layout.serial_log(clone["name"]))
    first = log.wait_for_tick(lambda tick: tick.number >= 1, timeout=120)
    assert first.cpus_online == 1
    since = log.size()
    args = dict(uri=clone["uri"], name=clone["name"], vcpus=2, memory="192 MiB")
    predicted = run_module("guest", args, check=True)
    changed = run_module("guest", args)
    assert changed["diff"] == predicted["diff"]
    assert changed["actions"] == [f"updated the definition of guest {clone['name']}",
                                  f"set 2 vCPUs on running guest {clone['name']}",
                                  f"set memory to 192 MiB on running guest {clone['name']}"]
    assert changed["restart_required"] is False
    # what the guest kernel saw: a second vCPU online, 64 MiB less memory
    log.wait_for_tick(lambda tick: tick.cpus_online == 2 and tick.mem_total_kib == first.mem_total_kib - 65536,
                      since, timeout=60, what="2 vCPUs online and 64 MiB less MemTotal")
    assert run_module("guest", args)["changed"] is False


def test_clones_boot_from_copies_of_the_template_disk(lab, run_module, uri, guest_name, tmp_path):
    """A template whose disk holds a marker; full and linked clones see it in their vda."""
    marker = f"kvmops-disk: {guest_name}"
    raw, image = tmp_path / "disk.raw", tmp_path / "disk.qcow2"
    raw.write_bytes((marker + "\n").encode().ljust(1024 * 1024, b"\0"))
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(image)], check=True)
    template, volume = guest_name + "-t", guest_name + "-t.qcow2"
    clones = {mode: f"{guest_name}-{mode}" for mode in ("full", "linked")}
    try:
        uploaded = run_module("volume", dict(uri=uri, pool="default", name=volume, upload=str(image), format="qcow2"))
        assert not uploaded.get("failed"), uploaded
        made = run_module("guest", dict(uri=uri, name=template, state="stopped", virt_type="qemu", memory=256,
                                        kernel=str(lab.layout.image_dir / "vmlinuz"),
                                        initrd=str(lab.layout.image_dir / "initrd.gz"),
                                        cmdline="console=ttyS0 panic=-1 quiet", serial=True,
                                        disks=[dict(pool="default", name=volume)]))
        assert not made.get("failed"), made
        for mode, name in clones.items():
            result = run_module("guest", dict(uri=uri, name=name, clone_from=template, clone_mode=mode,
                                              state="running", serial_log=str(lab.layout.serial_log(name))))
            assert result["guest"]["disks"][0]["volume"] == f"{name}-vda.qcow2", result
        for name in clones.values():
            log = SerialLog(lab.layout.serial_log(name))
            log.wait_for_tick(lambda tick: True, timeout=120)  # init reports disks before loadd starts
            assert log.line("disk vda marker=") == marker
        with LibvirtConnection(uri) as conn:
            pool = conn.handle.storagePoolLookupByName("default")
            linked = pool.storageVolLookupByName(f"{clones['linked']}-vda.qcow2").XMLDesc()
            full = pool.storageVolLookupByName(f"{clones['full']}-vda.qcow2").XMLDesc()
        assert f"/{volume}</path>" in linked and "<backingStore>" not in full
    finally:
        for name in list(clones.values()) + [template]:
            run_module("guest", dict(uri=uri, name=name, state="absent", remove_storage=True))
            lab.layout.serial_log(name).unlink(missing_ok=True)


def test_cloud_init_seed_is_what_the_guest_reads(lab, run_module, clone):
    user_data = {"users": [{"name": "ops", "shell": "/bin/sh"}], "runcmd": [["echo", "hello"]]}
    args = dict(clone, state="running", cloud_init=dict(user_data=user_data, meta_data={"role": "web"}))
    predicted = run_module("guest", args, check=True)
    created = run_module("guest", args)
    assert created["diff"] == predicted["diff"]
    assert any(action.startswith(f"created volume {clone['name']}-cidata.iso") for action in created["actions"])
    texts = seed_texts(user_data, {"role": "web"}, None, hostname=clone["name"])
    log = SerialLog(lab.layout.serial_log(clone["name"]))
    log.wait_for_tick(lambda tick: True, timeout=120)
    seen = log.line("cidata ")
    assert f"user-data={hashlib.sha256(texts.user_data.encode()).hexdigest()}" in seen
    assert f"meta-data={hashlib.sha256(texts.meta_data.encode()).hexdigest()}" in seen
    assert run_module("guest", args)["changed"] is False

    changed = run_module("guest", dict(args, cloud_init=dict(user_data="#!/bin/sh\necho changed\n")))
    assert changed["changed"] and changed["guest"]["cloud_init"] != created["guest"]["cloud_init"]
    assert changed["restart_required"] is False  # same drive, new medium: cloud-init reads it next boot


def test_stopped_shuts_the_guest_down_through_its_acpi_power_button(lab, run_module, clone, figures):
    run_module("guest", dict(clone, state="running"))
    wait_for_console(lab, clone["name"], r"kvmops-lab: tick=1 ")
    log = SerialLog(lab.layout.serial_log(clone["name"]))
    assert log.line("acpi power-button=") == "poweroff"
    since = log.size()
    args = dict(uri=clone["uri"], name=clone["name"], state="stopped", shutdown_timeout=60)
    predicted = run_module("guest", args, check=True)
    assert predicted["changed"] and domain_state(clone["uri"], clone["name"]) == libvirt.VIR_DOMAIN_RUNNING
    stopped = run_module("guest", args)
    assert stopped["diff"] == predicted["diff"]
    assert len(stopped["actions"]) == 1, stopped
    action = re.fullmatch(rf"shut down guest {clone['name']} \(ACPI\) in (\d+\.\d) s", stopped["actions"][0])
    assert action, stopped["actions"]
    figures("lab guest: state=stopped through ACPI (guest module, until libvirt reports it shut off)",
            f"{action.group(1)} s")
    assert stopped["guest"]["state"] == "stopped"
    # the guest's own doing: its acpid saw the power button and it powered itself off
    assert "kvmops-lab: acpi power button, powering off" in log.text(since)
    with LibvirtConnection(clone["uri"]) as conn:
        assert conn.handle.lookupByName(clone["name"]).state() == [libvirt.VIR_DOMAIN_SHUTOFF,
                                                                   libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN]
    assert run_module("guest", args)["changed"] is False


def test_stopped_asks_then_powers_off_only_when_forced(lab, run_module, clone):
    # kvmops.acpi=ignore: the lab guest ignores its power button, as a hung guest would
    run_module("guest", dict(clone, state="running",
                             cmdline="console=ttyS0 panic=-1 quiet kvmops.load=0 kvmops.acpi=ignore"))
    wait_for_console(lab, clone["name"], r"kvmops-lab: tick=1 ")
    log = SerialLog(lab.layout.serial_log(clone["name"]))
    assert log.line("acpi power-button=") == "ignore"
    started = time.monotonic()
    refused = run_module("guest", dict(uri=clone["uri"], name=clone["name"], state="stopped", shutdown_timeout=3))
    waited = time.monotonic() - started
    assert refused.get("failed"), refused
    assert "did not shut down within 3 s after an ACPI shutdown request and is still running" in refused["msg"]
    assert 3 <= waited < 10
    assert domain_state(clone["uri"], clone["name"]) == libvirt.VIR_DOMAIN_RUNNING
    forced = run_module("guest", dict(uri=clone["uri"], name=clone["name"], state="stopped", shutdown_timeout=2,
                                      force=True))
    assert re.fullmatch(rf"powered off guest {clone['name']} \(forced\) after [2-9]\.\d s", forced["actions"][0])
    assert forced["guest"]["state"] == "stopped"
    with LibvirtConnection(clone["uri"]) as conn:
        assert conn.handle.lookupByName(clone["name"]).state() == [libvirt.VIR_DOMAIN_SHUTOFF,
                                                                   libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED]
    assert "powering off" not in log.text()


def test_paused_starts_a_stopped_guest_paused(lab, run_module, clone):
    run_module("guest", dict(clone, state="stopped"))
    result = run_module("guest", dict(uri=clone["uri"], name=clone["name"], state="paused"))
    assert result["actions"] == [f"started guest {clone['name']} paused"]
    assert domain_state(clone["uri"], clone["name"]) == libvirt.VIR_DOMAIN_PAUSED
    assert run_module("guest", dict(uri=clone["uri"], name=clone["name"], state="running"))["actions"] == [
        f"resumed guest {clone['name']}"]
    wait_for_console(lab, clone["name"], r"kvmops-lab: booted")


def test_restart_if_needed_applies_what_cannot_change_live(lab, run_module, clone):
    run_module("guest", dict(clone, state="running"))
    wait_for_console(lab, clone["name"], r"kvmops-lab: tick=1 ")
    args = dict(uri=clone["uri"], name=clone["name"], cmdline="console=ttyS0 panic=-1 quiet kvmops.load=7")
    pending = run_module("guest", args)
    assert pending["restart_required"] is True and pending["restart_pending"] == ["cmdline"]
    log_size = lab.layout.serial_log(clone["name"]).stat().st_size
    restarted = run_module("guest", dict(args, restart="if_needed", shutdown_timeout=1, force=True))
    assert restarted["restart_required"] is False, restarted
    assert restarted["actions"][-1] == f"started guest {clone['name']}"
    # the guest booted again and its init read the new command line
    wait_for_console(lab, clone["name"], r"kvmops-lab: tick=\d+ up=[\d.]+ load=7 ", after=log_size)


def test_a_definition_that_does_not_start_is_rolled_back(lab, run_module, clone):
    run_module("guest", dict(clone, state="running"))
    wait_for_console(lab, clone["name"], r"kvmops-lab: tick=1 ")
    with LibvirtConnection(clone["uri"]) as conn:
        before = conn.handle.lookupByName(clone["name"]).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    result = run_module("guest", dict(uri=clone["uri"], name=clone["name"], kernel="/nonexistent/vmlinuz",
                                      restart="if_needed", shutdown_timeout=1, force=True))
    assert result["failed"]
    assert result["msg"].startswith(f"guest {clone['name']} did not start with its new definition (")
    assert result["msg"].endswith("the previous definition was restored and the guest started again")
    assert domain_state(clone["uri"], clone["name"]) == libvirt.VIR_DOMAIN_RUNNING
    with LibvirtConnection(clone["uri"]) as conn:
        assert conn.handle.lookupByName(clone["name"]).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == before


FLEET = ("fleet_from_template.yml", "fleet_size=20", "fleet_prefix=fleet")


def test_fleet_of_20_from_the_template_playbook(lab, ansible_env, figures, template):
    hosts = [host.spec.name for host in lab.running_hosts()]
    try:
        created, create_seconds = run_playbook(ansible_env, lab, *FLEET)
        assert sum(host["changed"] for host in created.values()) == len(hosts)
        again, again_seconds = run_playbook(ansible_env, lab, *FLEET)
        assert all(host["changed"] == 0 for host in again.values()), again
        figures("fleet playbook: 20 linked clones, running", f"{create_seconds:.1f} s (3 hosts)")
        figures("fleet playbook: second run, no change", f"{again_seconds:.1f} s")
        placement = {}
        for host in hosts:
            with LibvirtConnection(lab.host(host).spec.uri) as conn:
                for domain in conn.handle.listAllDomains():
                    if domain.name().startswith("fleet-"):
                        placement[domain.name()] = (host, domain.isActive())
        assert sorted(placement) == [f"fleet-{index:02d}" for index in range(1, 21)]
        assert all(active for _host, active in placement.values())
        assert placement["fleet-01"][0] == hosts[0] and placement["fleet-02"][0] == hosts[1]
        booted_by = time.monotonic() + 240
        for name in placement:
            wait_for_console(lab, name, r"kvmops-lab: booted", timeout=max(1, booted_by - time.monotonic()))
    finally:
        removed, remove_seconds = run_playbook(ansible_env, lab, *FLEET, "fleet_state=absent")
        figures("fleet playbook: remove the 20 with their disks", f"{remove_seconds:.1f} s")
    for host in hosts:
        with LibvirtConnection(lab.host(host).spec.uri) as conn:
            assert not [d for d in conn.handle.listAllDomains() if d.name().startswith("fleet-")]
            volumes = conn.handle.storagePoolLookupByName("default").listVolumes()
            assert not [v for v in volumes if v.startswith("fleet-")], volumes
    assert removed


def test_a_uefi_guest_is_removed_with_its_nvram(lab, run_module, uri, guest_name):
    args = dict(uri=uri, name=guest_name, virt_type="qemu", machine="q35", firmware="uefi", memory=256,
                state="running")
    try:
        created = run_module("guest", args)
        assert not created.get("failed"), created
        assert created["guest"]["firmware"] == "uefi" and created["guest"]["machine"].startswith("pc-q35-")
        assert run_module("guest", args)["changed"] is False  # q35 is pc-q35-7.2: no change
        with LibvirtConnection(uri) as conn:
            root = conn.handle.lookupByName(guest_name).XMLDesc(0)
        nvram = re.search(r"<nvram[^>]*>([^<]+)</nvram>", root).group(1)
        nvram_on_disk = lab.layout.host_dir(lab.host(HOST).spec) / "lib" / nvram.removeprefix("/var/lib/libvirt/")
        assert nvram_on_disk.exists(), nvram_on_disk
    finally:
        removed = run_module("guest", dict(uri=uri, name=guest_name, state="absent"))
    assert removed["actions"] == [f"undefined guest {guest_name}", f"powered off guest {guest_name}"], removed
    assert not nvram_on_disk.exists()
