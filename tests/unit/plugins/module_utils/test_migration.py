"""The migration's checks and verdicts: preflight on two test-driver hypervisors (node
files), where a guest must be after each outcome, and the flags libvirt gets. Moving
guests for real, and the memory check (the test driver reports no free memory), is
tests/integration/test_migrate_on_lab.py."""

import uuid

import libvirt
import pytest

from ansible_collections.kvmops.virt.plugins.module_utils.metadata import GuestMetadata
from ansible_collections.kvmops.virt.plugins.module_utils.guest_move import option_problems
from ansible_collections.kvmops.virt.plugins.module_utils.migration import (
    MigrationError, check_placement, expected_placement, migration_flags, preflight)

RUNNING, STOPPED = 1, 5


def domain_xml(name, state=RUNNING, memory_mib=512, tags=None, guest_uuid=None):
    metadata = ""
    if tags:
        fragment = GuestMetadata(tags).libvirt_fragment()
        metadata = "<metadata>%s</metadata>" % fragment.replace(
            "<guest>", "<kvmops:guest xmlns:kvmops='https://github.com/kvmops/kvmops.virt/1'>").replace(
            "<tag ", "<kvmops:tag ").replace("</tag>", "</kvmops:tag>").replace("</guest>", "</kvmops:guest>")
    return (f"<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'><name>{name}</name>"
            f"<uuid>{guest_uuid or uuid.uuid4()}</uuid>{metadata}<memory unit='MiB'>{memory_mib}</memory>"
            f"<vcpu>1</vcpu><os><type>hvm</type></os><test:runstate>{state}</test:runstate></domain>")


@pytest.fixture
def two_hosts(tmp_path):
    same = str(uuid.uuid4())

    def host(name, guests, memory_gib=4):
        path = tmp_path / f"{name}.xml"
        path.write_text(f"<node><cpu><mhz>2000</mhz><model>i686</model><nodes>1</nodes><sockets>1</sockets>"
                        f"<cores>2</cores><threads>1</threads></cpu><memory>{memory_gib * 1024 * 1024}</memory>"
                        + "".join(guests) + "</node>")
        return libvirt.open(f"test://{path}")

    source = host("source", [domain_xml("web"), domain_xml("pinned", tags={"migratable": False}),
                             domain_xml("off", state=STOPPED),
                             domain_xml("clash"), domain_xml("twice", guest_uuid=same)])
    destination = host("destination", [domain_xml("clash"), domain_xml("twice", guest_uuid=same),
                                       domain_xml("moved")])
    yield source, destination
    source.close()
    destination.close()


def test_a_guest_that_can_move(two_hosts):
    source, destination = two_hosts
    found = preflight(source, destination, "web")
    assert not found.already_there and found.state == "running" and found.memory == 512 * 1024 * 1024
    assert found.domain.name() == "web"


def test_a_guest_already_on_the_destination_is_nothing_to_do(two_hosts):
    source, destination = two_hosts
    found = preflight(source, destination, "moved")
    assert found.already_there and found.domain is None


@pytest.mark.parametrize("name, options, message", [
    ("pinned", {}, "tagged migratable=false; give force=true"),
    ("off", {}, "is not running: a live migration needs a running guest"),
    ("web", dict(live=False), "is running: an offline migration (live=false) needs it stopped"),
    ("clash", {}, "already has a different guest called clash"),
    ("twice", {}, "runs on both"),
    ("nowhere", {}, "guest nowhere is not on the source"),
])
def test_what_is_refused_and_why(two_hosts, name, options, message):
    source, destination = two_hosts
    with pytest.raises(MigrationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        preflight(source, destination, name, source_name="the source", destination_name="the destination",
                  **options)


def test_force_moves_a_pinned_guest(two_hosts):
    source, destination = two_hosts
    assert preflight(source, destination, "pinned", force=True).domain.name() == "pinned"


def test_the_source_cannot_be_the_destination(two_hosts):
    source, _destination = two_hosts
    with pytest.raises(MigrationError, match="the destination is the source hypervisor"):
        preflight(source, source, "web")


def place(source, destination):
    return dict(source=dict(active=source[0], persistent=source[1]),
                destination=dict(active=destination[0], persistent=destination[1]))


@pytest.mark.parametrize("outcome, placement, problems", [
    ("moved", place((False, False), (True, True)), []),
    ("stayed", place((True, True), (False, False)), []),
    ("moved", place((True, False), (True, True)), ["it runs on both hypervisors"]),
    ("moved", place((False, True), (True, True)), ["it is defined on both hypervisors"]),
    ("moved", place((False, False), (True, False)), ["it is not defined on the destination"]),
    ("stayed", place((True, True), (False, True)), ["it is defined on both hypervisors"]),
    ("stayed", place((False, True), (False, False)), ["it runs on neither hypervisor"]),
    ("stayed", place((False, True), (True, False)), ["it runs on the destination, not on the source"]),
])
def test_the_verdict_on_where_the_guest_is(outcome, placement, problems):
    assert check_placement(placement, expected_placement(outcome)) == problems


def test_expected_placements_follow_the_options():
    assert expected_placement("moved", persistent=False) == dict(
        active="destination", persistent=dict(source=False, destination=False))
    assert expected_placement("moved", undefine_source=False) == dict(
        active="destination", persistent=dict(source=True, destination=True))
    kept_both = place((False, True), (True, True))
    assert check_placement(kept_both, expected_placement("moved", undefine_source=False)) == []
    assert expected_placement("moved", live=False)["active"] is None


def test_flags():
    default = migration_flags()
    assert default == (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
                       | libvirt.VIR_MIGRATE_PEER2PEER)
    offline = migration_flags(live=False, persistent=False, transport="direct")
    assert offline & libvirt.VIR_MIGRATE_OFFLINE and offline & libvirt.VIR_MIGRATE_PERSIST_DEST
    assert not offline & libvirt.VIR_MIGRATE_PEER2PEER
    every = migration_flags(auto_converge=True, postcopy=30, compressed=True, parallel_connections=4,
                            copy_storage="incremental", unsafe=True)
    for flag in (libvirt.VIR_MIGRATE_AUTO_CONVERGE, libvirt.VIR_MIGRATE_POSTCOPY, libvirt.VIR_MIGRATE_COMPRESSED,
                 libvirt.VIR_MIGRATE_PARALLEL, libvirt.VIR_MIGRATE_NON_SHARED_INC, libvirt.VIR_MIGRATE_UNSAFE):
        assert every & flag
    assert not default & libvirt.VIR_MIGRATE_UNSAFE


def test_option_problems_are_all_said_at_once():
    params = dict(bandwidth=0, max_downtime=None, parallel_connections=None, timeout=-1, postcopy=None, live=False,
                  auto_converge=True, compressed=False, p2p_uri="qemu+tls://x/system", transport="direct")
    problems = option_problems(params)
    assert "bandwidth must be a positive number, got 0" in problems
    assert "timeout must be a positive number, got -1" in problems
    assert "auto_converge and compressed apply to live migrations only (live=false)" in problems
    assert "p2p_uri is for transport=p2p or tunnelled" in problems


def test_tunnelled_is_peer_to_peer_through_the_libvirt_connection():
    tunnelled = migration_flags(transport="tunnelled")
    assert tunnelled & libvirt.VIR_MIGRATE_TUNNELLED and tunnelled & libvirt.VIR_MIGRATE_PEER2PEER
    assert not migration_flags() & libvirt.VIR_MIGRATE_TUNNELLED
    assert migration_flags(tls=True) & libvirt.VIR_MIGRATE_TLS and not migration_flags() & libvirt.VIR_MIGRATE_TLS
    params = dict(bandwidth=None, max_downtime=None, parallel_connections=2, timeout=None, postcopy=10, live=True,
                  auto_converge=False, compressed=False, p2p_uri="qemu+tls://x/system", transport="tunnelled")
    assert option_problems(params) == [
        "parallel_connections does not work with transport=tunnelled (memory goes through the one libvirt "
        "connection); use transport=p2p",
        "postcopy does not work with transport=tunnelled (memory goes through the one libvirt connection); "
        "use transport=p2p"]
    assert option_problems(dict(params, parallel_connections=None, postcopy=None, tls=True)) == [
        "tls is for transport=p2p or direct: with tunnelled, memory already goes through the libvirt connection "
        "(encrypted when that is ssh or TLS)"]
