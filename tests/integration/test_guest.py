"""kvmops.virt.guest on the real lab: clones that boot, power changes that wait, restarts
that roll back, and the fleet playbook (20 guests from one template) with its timings."""

import re
import subprocess
import sys
import time
from pathlib import Path

import libvirt
import pytest

from ansible_collections.kvmops.virt.plugins.module_utils.connection import LibvirtConnection

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "playbooks"
HOST = "kvm1"
TEMPLATE = "lab-template"
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def playbook(ansible_env, lab, name, *extra_vars):
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(lab.layout.inventory_path),
               str(PLAYBOOKS / name)]
    for extra in extra_vars:
        command += ["-e", extra]
    started = time.monotonic()
    done = subprocess.run(command, env=ansible_env, capture_output=True, text=True, timeout=900, check=False)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    recap = {host: dict(ok=int(ok), changed=int(changed), failed=int(failed))
             for host, ok, changed, _unreachable, failed in RECAP.findall(done.stdout)}
    return recap, elapsed


@pytest.fixture(scope="module")
def template(lab, ansible_env):
    """The lab template guest on every lab host, made by the playbook the demo uses."""
    recap, _elapsed = playbook(ansible_env, lab, "lab_template.yml")
    assert all(host["failed"] == 0 for host in recap.values())
    return TEMPLATE


@pytest.fixture
def uri(lab):
    return lab.host(HOST).spec.uri


@pytest.fixture
def clone(lab, run_module, uri, template, guest_name):
    """A linked clone of the template on kvm1, logging its console; removed with its disk."""
    args = dict(uri=uri, name=guest_name, clone_from=template, clone_mode="linked",
                serial_log=str(lab.layout.serial_log(guest_name)))
    lab.layout.serial_log(guest_name).unlink(missing_ok=True)
    yield args
    result = run_module("guest", dict(uri=uri, name=guest_name, state="absent", remove_storage=True))
    assert not result.get("failed"), result


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


def test_stopped_asks_then_powers_off_only_when_forced(lab, run_module, clone):
    run_module("guest", dict(clone, state="running"))
    wait_for_console(lab, clone["name"], r"kvmops-lab: tick=1 ")
    started = time.monotonic()
    refused = run_module("guest", dict(uri=clone["uri"], name=clone["name"], state="stopped", shutdown_timeout=3))
    waited = time.monotonic() - started
    if not refused.get("failed"):
        pytest.skip("this lab guest obeys ACPI shutdown; the forced path is not reachable")
    assert "did not shut down within 3 s after an ACPI shutdown request and is still running" in refused["msg"]
    assert 3 <= waited < 10
    assert domain_state(clone["uri"], clone["name"]) == libvirt.VIR_DOMAIN_RUNNING
    forced = run_module("guest", dict(uri=clone["uri"], name=clone["name"], state="stopped", shutdown_timeout=2,
                                      force=True))
    assert re.fullmatch(rf"powered off guest {clone['name']} \(forced\) after [2-9]\.\d s", forced["actions"][0])
    assert forced["guest"]["state"] == "stopped"


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


def test_fleet_of_20_from_the_template_playbook(lab, ansible_env, figures, template):
    hosts = [host.spec.name for host in lab.running_hosts()]
    try:
        created, create_seconds = playbook(ansible_env, lab, "fleet_from_template.yml", "fleet_size=20",
                                           "fleet_prefix=fleet")
        assert sum(host["changed"] for host in created.values()) == len(hosts)
        again, again_seconds = playbook(ansible_env, lab, "fleet_from_template.yml", "fleet_size=20",
                                        "fleet_prefix=fleet")
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
        removed, remove_seconds = playbook(ansible_env, lab, "fleet_from_template.yml", "fleet_size=20",
                                           "fleet_prefix=fleet", "fleet_state=absent")
        figures("fleet playbook: remove the 20 with their disks", f"{remove_seconds:.1f} s")
    for host in hosts:
        with LibvirtConnection(lab.host(host).spec.uri) as conn:
            assert not [d for d in conn.handle.listAllDomains() if d.name().startswith("fleet-")]
            volumes = conn.handle.storagePoolLookupByName("default").listVolumes()
            assert not [v for v in volumes if v.startswith("fleet-")], volumes
    assert removed
