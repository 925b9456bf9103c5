"""kvmops.virt.host_load (event source): main(queue, args) on libvirt's test driver and an
address nobody answers on; arguments checked; the loop outlives a failed reading; the file
loads the way ansible-rulebook loads it, with the collection not on sys.path. The load
logic: tests/unit/plugins/module_utils/test_load_watch.py; real load and a real
ansible-rulebook: tests/integration/test_rulebook_on_lab.py."""

import asyncio
import subprocess
import sys

import pytest

from node_files import web_and_db


def hypervisors(tmp_path, closed_port):
    return web_and_db(tmp_path) + [dict(name="gone", uri=f"qemu+tcp://127.0.0.1:{closed_port}/system")]


async def collect(main, args, count, timeout=20):
    queue = asyncio.Queue()
    task = asyncio.create_task(main(queue, args))
    events = []
    try:
        while len(events) < count:
            events.append(await asyncio.wait_for(queue.get(), timeout))
    finally:
        task.cancel()
    return events


def test_events_from_main_on_a_queue(eda_plugin, tmp_path, closed_port):
    source = eda_plugin("event_source/host_load")
    args = dict(hypervisors=hypervisors(tmp_path, closed_port), interval=0.2, snapshot_every=0.1, connect_timeout=2)
    events = asyncio.run(collect(source["main"], args, 4))
    kinds = [event["type"] for event in events]
    assert kinds.count("host_unreachable") == 1 and kinds.count("fleet_snapshot") == 3, kinds
    [down] = [event for event in events if event["type"] == "host_unreachable"]
    assert down["host"] == "gone" and "Could not open a connection" in down["error"]
    snapshot = [event for event in events if event["type"] == "fleet_snapshot"][-1]["snapshot"]
    assert sorted(guest["name"] for guest in snapshot["guests"]) == ["db", "web"]
    assert [guest["tags"] for guest in snapshot["guests"] if guest["name"] == "db"] == [{"migratable": False}]
    assert {host["name"]: host.get("reachable", True) for host in snapshot["hosts"]} == dict(k1=True, k2=True, gone=False)


@pytest.mark.parametrize("args, message", [
    (dict(), "give either hypervisors (a list of name and uri) or inventory (a path), not neither"),
    (dict(hypervisors=[dict(name="a")]), "hypervisors[0] needs a name and a uri"),
    (dict(hypervisors=[dict(name="a", uri="test:///default")], interval=0), "interval must be above 0, got 0"),
    (dict(hypervisors=[dict(name="a", uri="test:///default")], cpu_low=95), "cpu_low (95.0) must be at least 0 and below"),
    (dict(inventory="/nowhere/inventory.yml"), "inventory /nowhere/inventory.yml does not exist"),
])
def test_bad_arguments_stop_the_source_with_a_reason(eda_plugin, args, message):
    with pytest.raises(ValueError) as raised:
        asyncio.run(eda_plugin("event_source/host_load")["main"](asyncio.Queue(), args))
    assert str(raised.value).startswith("kvmops.virt.host_load: ") and message in str(raised.value)


def test_the_loop_outlives_a_reading_that_raises(eda_plugin, tmp_path, closed_port):
    globals_ = eda_plugin("event_source/host_load")
    source = globals_["HostLoadSource"](dict(hypervisors=hypervisors(tmp_path, closed_port)[:1], interval=0.05,
                                             snapshot_every=0.01))
    readings = []
    real_read = source.read

    def flaky_read(definitions=False):
        readings.append(definitions)
        if len(readings) == 1:
            raise RuntimeError("libvirt went away mid-call")
        return real_read(definitions)
    source.read = flaky_read

    async def first_event():
        queue = asyncio.Queue()
        task = asyncio.create_task(source.run(queue))
        try:
            return await asyncio.wait_for(queue.get(), 10)
        finally:
            task.cancel()
    assert asyncio.run(first_event())["type"] == "fleet_snapshot" and len(readings) >= 2


@pytest.mark.parametrize("plugin", ["event_source/host_load", "event_source/libvirt_events", "event_filter/alertmanager"])
def test_the_plugin_loads_by_path_without_the_collection_on_sys_path(eda_plugin_path, plugin):
    code = ("import runpy, sys; found = runpy.run_path(sys.argv[1]); "
            "assert callable(found['main']) and 'DOCUMENTATION' in found; print('loaded')")
    done = subprocess.run([sys.executable, "-I", "-c", code, str(eda_plugin_path(plugin))],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "loaded", done.stderr
