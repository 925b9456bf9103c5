"""kvmops.virt.libvirt_events (event source): libvirt's lifecycle callbacks turned into
events, on libvirt's test driver (test:///default is shared within a process, so a guest
this test starts there is seen by the source's own connection); an address nobody answers
on; arguments checked. Real migrations and a killed libvirtd: tests/integration/test_libvirt_events_on_lab.py."""

import asyncio
import json
import subprocess
import sys

import libvirt
import pytest

DOMAIN = """<domain type="test"><name>{name}</name><memory unit="MiB">64</memory><vcpu>1</vcpu>
  <os><type>hvm</type></os></domain>"""


# In a process of its own: libvirt's event loop must be registered before the test driver
# is first opened (the pytest process opened it long before), and test:///default is
# shared by the connections of one process, so a guest started here is seen by the source.
SCENARIO = """
import asyncio, json, runpy, sys
import libvirt
plugin = runpy.run_path(sys.argv[1])
plugin["run_event_loop"]()

async def scenario():
    queue = asyncio.Queue()
    args = dict(hypervisors=[dict(name="t1", uri="test:///default"), dict(name="gone", uri=sys.argv[2])],
                reconnect_interval=0.2, connect_timeout=2)
    task = asyncio.create_task(plugin["main"](queue, args))
    await asyncio.sleep(1)
    conn = libvirt.open("test:///default")
    domain = conn.createXML(sys.argv[3], 0)
    domain.destroy()
    await asyncio.sleep(2)
    task.cancel()
    events = []
    while not queue.empty():
        events.append(queue.get_nowait())
    print(json.dumps(events))

asyncio.run(scenario())
"""


def test_lifecycle_events_of_a_guest_and_an_unreachable_host(eda_plugin_path, closed_port):
    done = subprocess.run([sys.executable, "-c", SCENARIO, str(eda_plugin_path("event_source/libvirt_events")),
                           f"qemu+tcp://127.0.0.1:{closed_port}/system", DOMAIN.format(name="ev-guest")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    events = json.loads(done.stdout)
    gone = [event for event in events if event["type"] == "host_unreachable"]
    assert len(gone) == 1 and gone[0]["host"] == "gone" and "Could not open a connection" in gone[0]["error"]
    guest = [(event["type"], event["detail"], event["host"]) for event in events if event.get("guest") == "ev-guest"]
    assert guest == [("guest_started", "booted", "t1"), ("guest_stopped", "destroyed", "t1")], events


@pytest.mark.parametrize("event, detail, expected", [
    (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED, ("guest_migrated", "out")),
    (libvirt.VIR_DOMAIN_EVENT_RESUMED, libvirt.VIR_DOMAIN_EVENT_RESUMED_MIGRATED, ("guest_migrated", "in")),
    (libvirt.VIR_DOMAIN_EVENT_STARTED, libvirt.VIR_DOMAIN_EVENT_STARTED_MIGRATED, ("guest_started", None)),
    (libvirt.VIR_DOMAIN_EVENT_CRASHED, 0, ("guest_crashed", None)),
    (99, 7, ("guest_event99", None)),
])
def test_one_event_per_end_of_a_migration_and_names_for_the_rest(eda_plugin, event, detail, expected):
    plugin = eda_plugin("event_source/libvirt_events")
    record = plugin["lifecycle_event"]("kvm1", "qemu:///system", "web", "uuid-1", event, detail, plugin["_details"]())
    assert (record["type"], record.get("direction")) == expected and record["guest"] == "web"


@pytest.mark.parametrize("args, message", [
    (dict(), "not neither"),
    (dict(hypervisors="kvm1"), "hypervisors must be a list"),
    (dict(hypervisors=[dict(name="a", uri="test:///default")], reconnect_interval=-1),
     "reconnect_interval must be above 0, got -1"),
    (dict(hypervisors=[dict(name="a", uri="test:///default")], keepalive_interval="often"),
     "keepalive_interval must be a number, got 'often'"),
])
def test_bad_arguments_stop_the_source_with_a_reason(eda_plugin, args, message):
    with pytest.raises(ValueError) as raised:
        asyncio.run(eda_plugin("event_source/libvirt_events")["main"](asyncio.Queue(), args))
    assert str(raised.value).startswith("kvmops.virt.libvirt_events: ") and message in str(raised.value)
