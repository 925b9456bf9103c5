"""The fleet snapshot's orchestration (bounded waits, order), the guest agent's part of it,
and the maintenance mark on a driver without secrets."""

import threading
import time

import libvirt
import pytest

from ansible_collections.kvmops.virt.plugins.module_utils import fleet
from ansible_collections.kvmops.virt.plugins.module_utils.guest_agent import (
    agent_channel_state, apply_agent_addresses, host_address, worth_asking)
from ansible_collections.kvmops.virt.plugins.module_utils.maintenance import MARK_UUID, clear_mark, read_mark
from ansible_collections.kvmops.virt.plugins.module_utils.safe_xml import parse_xml


def test_a_hypervisor_that_hangs_mid_way_costs_its_timeout_and_the_rest_is_complete(monkeypatch):
    never = threading.Event()
    real = fleet._gather_one

    def gather_one(hypervisor, connection_options, options):
        if hypervisor["name"] == "stuck":
            never.wait(60)  # a libvirtd that stopped answering after the connection opened
        return real(hypervisor, connection_options, options)

    monkeypatch.setattr(fleet, "_gather_one", gather_one)
    hypervisors = [dict(name="one", uri="test:///default"), dict(name="stuck", uri="test:///default"),
                   dict(name="two", uri="test:///default")]
    started = time.monotonic()
    result = fleet.gather_fleet(hypervisors, dict(connect_timeout=5), max_workers=2, timeout=1.5)
    seconds = time.monotonic() - started
    never.set()
    assert [item["name"] for item in result] == ["one", "stuck", "two"]
    assert result[0]["reachable"] and result[2]["reachable"]
    assert result[1]["reachable"] is False and "no complete answer within 1.5 seconds" in result[1]["error"]
    assert 1.5 <= seconds < 5


def test_the_snapshot_of_the_test_driver(driver):
    (snapshot,) = fleet.gather_fleet([dict(name="t", uri="test:///default")], dict(connect_timeout=5),
                                     sample_seconds=0.2)
    assert snapshot["reachable"] and snapshot["host"]["maintenance"] is None
    names = {guest["name"] for guest in snapshot["guests"]}
    assert names == {domain.name() for domain in driver.listAllDomains()}
    for guest in snapshot["guests"]:
        assert guest["agent_channel"] is None and "agent" not in guest  # nobody asked
        if guest["state"] == "running":
            assert "cpu_cores" in guest  # sampled (None: the test driver keeps no CPU time)


def test_agent_channel_state_from_a_definition():
    def domain(channel):
        return parse_xml("<domain><devices>%s</devices></domain>" % channel)

    assert agent_channel_state(domain("")) is None
    assert agent_channel_state(domain("<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0' "
                                      "state='connected'/></channel>")) == "connected"
    assert agent_channel_state(domain("<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/>"
                                      "</channel>")) == "unknown"
    assert agent_channel_state(domain("<channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0' "
                                      "state='connected'/></channel>")) is None


@pytest.mark.parametrize("state, channel, asked", [
    ("running", "connected", True), ("running", "disconnected", False), ("running", None, False),
    ("paused", "connected", False), ("stopped", "unknown", False),
])
def test_only_running_guests_with_a_connected_agent_are_asked(state, channel, asked):
    assert worth_asking(dict(state=state, agent_channel=channel)) is asked


def test_agent_addresses_are_listed_but_never_taken_for_the_address():
    guest = dict(interfaces=[dict(mac="52:54:00:00:00:01", address="192.0.2.5"),
                             dict(mac="52:54:00:00:00:02", address=None),
                             dict(mac="52:54:00:00:00:03", address=None)],
                 agent=dict(interfaces=[
                     dict(name="lo", mac=None, addresses=["127.0.0.1", "::1"]),
                     dict(name="eth0", mac="52:54:00:00:00:01", addresses=["192.0.2.7", "fe80::1"]),
                     dict(name="eth1", mac="52:54:00:00:00:02", addresses=["fe80::2", "198.51.100.9"])]))
    apply_agent_addresses(guest)
    first, second, third = guest["interfaces"]
    assert first["address"] == "192.0.2.5" and first["addresses"] == ["192.0.2.7", "fe80::1"]  # the lease
    assert second["address"] is None and second["addresses"] == ["fe80::2", "198.51.100.9"]  # the guest's word
    assert third["address"] is None and third["addresses"] == []
    assert host_address(guest["interfaces"]) == "192.0.2.5"
    assert host_address([second, third]) is None  # the agent's addresses are not trusted...
    assert host_address([second, third], trust_agent=True) == "198.51.100.9"  # ...unless asked
    assert host_address([third], trust_agent=True) is None


def test_a_driver_without_secrets_has_no_maintenance_mark(driver):
    assert read_mark(driver) is None
    assert clear_mark(driver) is False
    with pytest.raises(libvirt.libvirtError):
        driver.secretLookupByUUIDString(MARK_UUID)
