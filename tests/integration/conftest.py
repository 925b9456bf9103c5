"""The real lab for integration tests: brought up once per run, torn down if we started it."""

import time

import libvirt
import pytest

from ansible_collections.kvmops.virt.plugins.module_utils.connection import LibvirtConnection
from ansible_collections.kvmops.virt.plugins.module_utils.metadata import (
    METADATA_NAMESPACE, METADATA_PREFIX, GuestMetadata)
from ansible_collections.kvmops.virt.plugins.module_utils.safe_xml import parse_xml
from lab import Lab
from lab.locking import lab_turn
from playbook_runner import TEMPLATE, TEMPLATE_HOST, run_playbook

LAB_HOSTS = 3
NETWORK_HOST = 1  # kvmnet1


# One lab per machine: its hosts own fixed loopback addresses, so concurrent test runs
# (two checkouts, two developers) take turns instead of tearing down each other's hosts.
@pytest.fixture(scope="session")
def lab_lock():
    with lab_turn():
        yield


@pytest.fixture(scope="session")
def lab(figures, lab_lock):  # pylint: disable=unused-argument
    lab = Lab()
    already_running = {host.spec.name for host in lab.running_hosts()}
    started = time.monotonic()
    lab.up(LAB_HOSTS, log=lambda line: None)
    if not already_running:
        figures("lab up (3 hosts) for the integration tests", f"{time.monotonic() - started:.1f} s")
    yield lab
    if already_running:
        return  # a developer's lab: leave it as it was found
    lab.down(log=lambda line: None)
    assert lab.leftovers() == {}, "lab down left processes behind"


@pytest.fixture(scope="session")
def network_host(figures, lab_lock):  # pylint: disable=unused-argument
    """kvmnet1: a lab hypervisor in network and mount namespaces of its own, where libvirt
    may run iptables and dnsmasq for NAT and isolated networks. Started on demand (the
    kvm hosts are not needed for it), stopped at the end of the run if this run started it."""
    lab = Lab()
    started = time.monotonic()
    host, we_started = lab.start_network_host(NETWORK_HOST, log=lambda line: None)
    if we_started:
        figures(f"lab network host {host.spec.name} up", f"{time.monotonic() - started:.1f} s")
    yield host
    if not we_started:
        return  # a developer's: leave it as it was found
    swept = host.stop()
    assert swept == [], f"{host.spec.name}: processes outlived libvirtd and had to be killed: {swept}"
    assert host.namespace_pids() == [], f"{host.spec.name} left processes behind"


@pytest.fixture
def guest_name(lab, request):
    """A unique guest name for one test, removed from every lab host afterwards."""
    name = "it-" + request.node.name.replace("_", "-")[5:40].strip("-")
    lab.remove_guest_if_defined(name)  # left over from an interrupted run
    yield name
    lab.remove_guest_if_defined(name)


@pytest.fixture(scope="session")
def template(lab, ansible_env):
    """The lab template guest on every lab host, made by the playbook the demo uses."""
    recap, _elapsed = run_playbook(ansible_env, lab, "lab_template.yml")
    assert all(host["failed"] == 0 for host in recap.values())
    return TEMPLATE


@pytest.fixture
def uri(lab):
    return lab.host(TEMPLATE_HOST).spec.uri


@pytest.fixture
def clone(lab, run_module, uri, template, guest_name):
    """Arguments of kvmops.virt.guest for a linked clone of the template on kvm1 that logs its
    console; the guest is removed with its disks afterwards."""
    args = dict(uri=uri, name=guest_name, clone_from=template, clone_mode="linked",
                serial_log=str(lab.layout.serial_log(guest_name)))
    lab.layout.serial_log(guest_name).unlink(missing_ok=True)
    yield args
    result = run_module("guest", dict(uri=uri, name=guest_name, state="absent", remove_storage=True))
    assert not result.get("failed"), result


@pytest.fixture
def pin_guest(lab):
    """pin_guest(host, name): tag a running lab guest migratable=false (live and persistent),
    keeping its other tags, as the guest module stores tags."""
    def pin(host, name):
        with LibvirtConnection(lab.host(host).spec.uri) as conn:
            domain = conn.handle.lookupByName(name)
            metadata = GuestMetadata.from_domain(parse_xml(domain.XMLDesc(0)))
            metadata.tags["migratable"] = False
            domain.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, metadata.libvirt_fragment(), METADATA_PREFIX,
                               METADATA_NAMESPACE, libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    return pin
