"""The lab's hypervisors reached as real fleets are: over ssh (an sshd on each host, keys)
and over TLS (certificates from the lab's CA), side by side with plain TCP.

Over ssh: the inventory plugin, p2p, tunnelled and direct live migrations, a maintenance
drain, host_load and libvirt_events (a killed sshd is unreachable, then reconnected). Over
TLS: the inventory, a p2p migration where the source uses its own client certificate, a
tunnelled one. And the failures a person meets first, each naming the URI, the step and
what to do: an unknown host key, a key the host does not accept, a silent peer, a server
certificate for another name, a p2p migration whose source cannot reach the destination.
"""

import asyncio
import contextlib
import time

import pytest

from ansible_collections.kvmops.virt.plugins.module_utils.connection import LibvirtConnection, LibvirtOperationError
from ansible_collections.kvmops.virt.plugins.module_utils.maintenance import clear_mark
from guest_placement import where
from lab import pki
from lab.hosts import LabHost
from lab_helpers import SPARE_HOST, next_event, spare_host
from lab_inventory import hosts_of, inventory_list, write_config


def migrate(run_module, lab, name, source, destination, over, **options):
    """The migrate module's result, with "wall": the seconds of the whole module run."""
    started = time.monotonic()
    result = run_module("migrate", dict(uri=lab.uri(source, over), name=name, destination=lab.uri(destination, over),
                                        **options))
    return dict(result, wall=time.monotonic() - started)


def timing(result):
    return f"{result['wall']:.1f} s (migration {result['elapsed_ms'] / 1000:.1f} s)"


def assert_only_on(lab, name, host):
    assert where(lab, name) == {host: (True, True)}, f"{name}: {where(lab, name)}, expected only on {host}"


@contextlib.contextmanager
def lines_removed(path, fragment):
    """The file without its lines that contain fragment, for the block; then as it was."""
    original = path.read_text()
    kept = [line for line in original.splitlines() if fragment not in line]
    assert len(kept) < len(original.splitlines()), f"{path} has no line with {fragment!r}"
    path.write_text("".join(line + "\n" for line in kept))
    try:
        yield
    finally:
        path.write_text(original)


@pytest.fixture
def guest_on_kvm1(lab, guest_name):
    lab.create_guest(guest_name, "kvm1", load=20)
    return guest_name


def test_the_inventory_over_tcp_ssh_and_tls(lab, ansible_env, tmp_path, guest_on_kvm1, figures):
    seconds = {}
    for _round in range(2):  # alternated, best of two: this machine is shared and noisy
        for transport in ("tcp", "ssh", "tls"):
            inventory = lab.write_inventory(tmp_path / f"lab-{transport}.yml", transport)
            config = write_config(tmp_path, lab, inventory=inventory, stem=transport)
            data, _stderr, took = inventory_list(ansible_env, config)
            seconds[transport] = min(took, seconds.get(transport, took))
            assert hosts_of(data, "kvm_hypervisors") == ["kvm1", "kvm2", "kvm3"], transport
            assert not hosts_of(data, "kvm_unreachable"), (transport, data.get("kvm_unreachable"))
            assert guest_on_kvm1 in hosts_of(data, "kvm_on_kvm1"), transport
            assert data["_meta"]["hostvars"]["kvm1"]["kvm_uri"] == lab.uri("kvm1", transport)
            assert data["_meta"]["hostvars"][guest_on_kvm1]["kvm_uri"] == lab.uri("kvm1", transport)
    figures("inventory of the lab (3 hypervisors): tcp / ssh / tls",
            " / ".join(f"{seconds[transport]:.2f} s" for transport in ("tcp", "ssh", "tls")))


def test_live_migrations_over_ssh_beside_tcp(lab, run_module, guest_on_kvm1, figures):
    timings = []
    for kind in ("p2p", "direct", "tunnelled"):
        there = migrate(run_module, lab, guest_on_kvm1, "kvm1", "kvm2", "ssh", transport=kind)
        assert there["moved"] and not there.get("failed"), there
        assert_only_on(lab, guest_on_kvm1, "kvm2")
        back = migrate(run_module, lab, guest_on_kvm1, "kvm2", "kvm1", "tcp", transport=kind)
        assert back["moved"] and not back.get("failed"), back
        assert_only_on(lab, guest_on_kvm1, "kvm1")
        timings.append(f"{kind} {timing(there)} vs {timing(back)}")
    figures("live migration over ssh vs tcp", "; ".join(timings))


def test_p2p_and_tunnelled_over_tls_with_the_source_hosts_own_certificate(lab, run_module, guest_on_kvm1, figures):
    # the controller's certificate is in its URI (pkipath); the source dials the plain URI
    # with its own, from its /etc/pki, as on a real fleet
    there = migrate(run_module, lab, guest_on_kvm1, "kvm1", "kvm2", "tls",
                    p2p_uri=f"qemu+tls://{lab.host('kvm2').spec.address}/system")
    assert there["moved"] and not there.get("failed"), there
    assert_only_on(lab, guest_on_kvm1, "kvm2")
    back = migrate(run_module, lab, guest_on_kvm1, "kvm2", "kvm1", "tls", transport="tunnelled",
                   p2p_uri=f"qemu+tls://{lab.host('kvm1').spec.address}/system")
    assert back["moved"] and not back.get("failed"), back
    assert_only_on(lab, guest_on_kvm1, "kvm1")
    figures("live migration over TLS: p2p / tunnelled", f"{timing(there)} / {timing(back)}")


def test_a_drain_over_ssh(lab, run_module, guest_name):
    names = [guest_name + "-a", guest_name + "-b"]
    lab.create_guests(dict.fromkeys(names, "kvm3"), load=10)
    fleet = [dict(name=host, uri=lab.uri(host, "ssh")) for host in ("kvm1", "kvm2", "kvm3")]
    try:
        result = run_module("hypervisor_maintenance", dict(hypervisors=fleet, names=["kvm3"], reason="over ssh"))
        assert result["changed"] and not result.get("failed"), result
        assert sorted(item["guest"] for item in result["moved"]) == names and result["failures"] == []
        for name in names:
            placement = where(lab, name)
            assert len(placement) == 1 and set(placement) < {"kvm1", "kvm2"}, placement
            assert list(placement.values()) == [(True, True)], placement
        left = run_module("hypervisor_maintenance", dict(hypervisors=fleet, names=["kvm3"], state="exit"))
        assert left["changed"] and not left.get("failed"), left
    finally:
        for name in names:
            lab.remove_guest_if_defined(name)
        with LibvirtConnection(lab.host("kvm3").spec.uri) as conn:
            clear_mark(conn.handle)


def test_event_sources_over_ssh_see_a_killed_sshd_and_reconnect(lab, eda_plugin, guest_name, figures):
    """libvirt_events keeps its connection over ssh (keepalive) and host_load reads over
    it: with kvm2's sshd and its sessions killed, both report kvm2 unreachable; with sshd
    back, reachable, and libvirt_events sees a guest start on the new connection."""
    hypervisors = [dict(name="kvm2", uri=lab.uri("kvm2", "ssh"))]
    events_source = eda_plugin("event_source/libvirt_events")
    load_source = eda_plugin("event_source/host_load")
    kvm2 = lab.host("kvm2")

    async def scenario():
        events, loads = asyncio.Queue(), asyncio.Queue()
        tasks = [asyncio.create_task(events_source["main"](events, dict(hypervisors=hypervisors,
                                                                        reconnect_interval=0.5))),
                 asyncio.create_task(load_source["main"](loads, dict(hypervisors=hypervisors, interval=1,
                                                                     connect_timeout=5, timeout=5)))]
        try:
            await asyncio.sleep(2.5)  # connected, and host_load has its first readings
            assert loads.empty(), loads.get_nowait()  # nothing hot, nothing lost: no event yet
            killed_at = time.monotonic()
            assert await asyncio.to_thread(kvm2.kill_sshd)
            unreachable = await next_event(events, lambda event: event["type"] == "host_unreachable")
            noticed = time.monotonic() - killed_at
            assert unreachable["host"] == "kvm2"
            load_unreachable = await next_event(loads, lambda event: event["type"] == "host_unreachable")
            assert load_unreachable["host"] == "kvm2"
            await asyncio.to_thread(kvm2.start_sshd)
            assert (await next_event(events, lambda event: event["type"] == "host_reachable"))["host"] == "kvm2"
            assert (await next_event(loads, lambda event: event["type"] == "host_reachable"))["host"] == "kvm2"
            await asyncio.to_thread(lab.create_guest, guest_name, "kvm2")
            started = await next_event(events, lambda event: event.get("guest") == guest_name
                                       and event["type"] == "guest_started")
            assert started["host"] == "kvm2"
            return noticed
        finally:
            for task in tasks:
                task.cancel()

    noticed = asyncio.run(scenario())
    figures("libvirt_events over ssh: sshd killed -> host_unreachable", f"{noticed:.1f} s")


def open_error(uri, connect_timeout=5):
    started = time.monotonic()
    with pytest.raises(LibvirtOperationError) as caught:
        LibvirtConnection(uri, connect_timeout=connect_timeout).open()
    return caught.value, time.monotonic() - started


def test_an_unknown_host_key_is_refused_at_once(lab, figures):
    uri = lab.uri("kvm1", "ssh")
    with lines_removed(lab.ssh.known_hosts, lab.host("kvm1").spec.address + " "):
        error, seconds = open_error(uri)
    figures("ssh: unknown host key refused", f"{seconds:.2f} s")
    assert seconds < 3
    assert str(error).startswith(f"Could not open a connection on {uri}: ")
    assert "Host key verification failed" in error.detail
    assert "ssh-keyscan -t ed25519 127.0.0.2" in error.advice


def test_a_key_the_host_does_not_accept(lab):
    uri = lab.uri("kvm1", "ssh")
    with lines_removed(lab.host("kvm1").ssh_dir / "authorized_keys", "kvmops-lab-controller"):
        error, seconds = open_error(uri)
    assert seconds < 3
    assert "Permission denied (publickey" in error.detail
    assert "authorized_keys on 127.0.0.2" in error.advice


def test_a_peer_that_never_speaks_ssh_is_bounded_by_connect_timeout(silent_listener, figures):
    uri = f"qemu+ssh://root@127.0.0.1:{silent_listener}/system"
    error, seconds = open_error(uri, connect_timeout=2)
    figures("ssh: a peer that never speaks, connect_timeout=2", f"failed after {seconds:.2f} s")
    assert 1.9 < seconds < 4
    assert error.detail == ("no answer within 2 seconds (connect_timeout); is the host reachable, and does sshd "
                            "answer on its port (22 unless the URI names one)?")


@pytest.fixture
def host_with_a_certificate_for_another_name(lab):
    """kvm4 alone, its TLS server certificate issued for 127.0.0.99 and "elsewhere"."""
    def issue_for_another_name(host):
        host.write_config()
        own = host.dir / "pki" / "libvirt"
        pki.issue(lab.layout.root / "pki" / "ca", own / "servercert.pem", own / "private" / "serverkey.pem",
                  "elsewhere", "server", addresses=["127.0.0.99"], names=["elsewhere"])
        host.write_config = lambda: None  # start() keeps the certificate above

    with spare_host(LabHost(lab.host(SPARE_HOST).spec, lab.layout), issue_for_another_name) as host:
        yield host


def test_a_tls_certificate_for_another_name(lab, host_with_a_certificate_for_another_name):
    uri = lab.uri(SPARE_HOST, "tls")
    error, seconds = open_error(uri)
    assert seconds < 3
    assert "Failed to verify peer's certificate" in error.detail, error.detail
    assert "most often it is not issued for the name in the URI (its subjectAltName must list 127.0.0.5)" in error.advice


def test_a_p2p_migration_whose_source_cannot_reach_the_destination(lab, run_module, guest_on_kvm1, figures):
    """kvm2 does not accept kvm1's own key: p2p fails on kvm1 and says where; the guest
    runs on, only on kvm1; transport=direct (the controller relays) then moves it."""
    with lines_removed(lab.host("kvm2").ssh_dir / "authorized_keys", "root@kvm1"):
        failed = migrate(run_module, lab, guest_on_kvm1, "kvm1", "kvm2", "ssh")
        assert failed.get("failed") and not failed.get("moved"), failed
        assert "Permission denied (publickey" in failed["msg"], failed["msg"]
        assert "authorized_keys on the destination (127.0.0.3)" in failed["msg"], failed["msg"]
        assert "In a p2p migration, the source hypervisor's libvirtd dials the destination itself" in failed["msg"]
        assert_only_on(lab, guest_on_kvm1, "kvm1")
        relayed = migrate(run_module, lab, guest_on_kvm1, "kvm1", "kvm2", "ssh", transport="direct")
    assert relayed["moved"] and not relayed.get("failed"), relayed
    assert_only_on(lab, guest_on_kvm1, "kvm2")


def test_guest_memory_crosses_in_tls_when_asked(lab, run_module, guest_on_kvm1, figures):
    """tls=true reaches QEMU: with the destination's QEMU certificates hidden the migration
    fails and the guest stays where it was; with them it moves, encrypted."""
    qemu_certificates = lab.host("kvm2").dir / "pki" / "qemu"
    hidden = qemu_certificates.with_name("qemu-hidden")
    plain_uri = f"qemu+tls://{lab.host('kvm2').spec.address}/system"
    qemu_certificates.rename(hidden)
    try:
        refused = migrate(run_module, lab, guest_on_kvm1, "kvm1", "kvm2", "tls", tls=True, p2p_uri=plain_uri)
    finally:
        hidden.rename(qemu_certificates)
    assert refused.get("failed") and not refused.get("moved"), refused
    assert_only_on(lab, guest_on_kvm1, "kvm1")
    encrypted = migrate(run_module, lab, guest_on_kvm1, "kvm1", "kvm2", "tls", tls=True, p2p_uri=plain_uri)
    assert encrypted["moved"] and not encrypted.get("failed"), encrypted
    assert_only_on(lab, guest_on_kvm1, "kvm2")
    in_clear = migrate(run_module, lab, guest_on_kvm1, "kvm2", "kvm1", "tls",
                       p2p_uri=f"qemu+tls://{lab.host('kvm1').spec.address}/system")
    assert in_clear["moved"], in_clear
    figures("live migration, memory with TLS / in clear", f"{timing(encrypted)} / {timing(in_clear)}")
    figures("migration with tls=true, destination without QEMU certificates", refused["msg"][:160])
