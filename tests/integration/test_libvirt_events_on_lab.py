"""kvmops.virt.libvirt_events on the lab: a live migration gives one guest_migrated at each
end, a killed libvirtd gives host_unreachable, and once it is back host_reachable, with
the guests' events flowing again on the new connection."""

import asyncio
import time

from lab_helpers import next_event

GUEST = "it-events-1"


def test_migration_and_a_lost_hypervisor(lab, run_module, eda_plugin, figures):
    lab.remove_guest_if_defined(GUEST)
    lab.create_guest(GUEST, "kvm1", load=5)
    source = eda_plugin("event_source/libvirt_events")
    hypervisors = [dict(name=host, uri=lab.host(host).spec.uri) for host in ("kvm1", "kvm2")]

    async def scenario():
        queue = asyncio.Queue()
        task = asyncio.create_task(source["main"](queue, dict(hypervisors=hypervisors, reconnect_interval=0.5)))
        try:
            await asyncio.sleep(1)
            moved = await asyncio.to_thread(run_module, "migrate", dict(
                uri=lab.host("kvm1").spec.uri, name=GUEST, destination=lab.host("kvm2").spec.uri))
            assert moved["moved"], moved
            migrated = [await next_event(queue, lambda event: event["type"] == "guest_migrated") for _end in (1, 2)]
            assert sorted((event["host"], event["direction"]) for event in migrated) == [("kvm1", "out"), ("kvm2", "in")]
            assert {event["guest"] for event in migrated} == {GUEST}

            lab.host("kvm2").kill()
            killed = time.monotonic()
            gone = await next_event(queue, lambda event: event["type"] == "host_unreachable")
            noticed = time.monotonic() - killed
            assert gone["host"] == "kvm2"
            await asyncio.to_thread(lab.host("kvm2").start)
            back = await next_event(queue, lambda event: event["type"] == "host_reachable")
            assert back["host"] == "kvm2"
            await asyncio.to_thread(lab.remove_guest, GUEST)  # destroyed on kvm2: seen on the new connection
            stopped = await next_event(queue, lambda event: event.get("guest") == GUEST and event["type"] == "guest_stopped")
            assert stopped["host"] == "kvm2" and stopped["detail"] == "destroyed"
            return noticed
        finally:
            task.cancel()

    try:
        noticed = asyncio.run(scenario())
    finally:
        lab.remove_guest_if_defined(GUEST)
    figures("libvirt_events: libvirtd killed -> host_unreachable", f"{noticed:.1f} s")
