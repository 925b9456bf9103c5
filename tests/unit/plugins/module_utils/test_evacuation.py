"""Where a drain sends guests (the interim placement until the planner): pure functions over
a fleet snapshot. Draining real hosts is tests/integration/test_maintenance_on_lab.py."""

from ansible_collections.kvmops.virt.plugins.module_utils.evacuation import choose, plan_drain, rooms

GIB = 1024 ** 3


def hypervisor(name, guests, memory_gib=16, cpus=4, maintenance=None, reachable=True):
    running = [guest for guest in guests if guest["state"] in ("running", "paused")]
    host = dict(memory_total=memory_gib * GIB, memory_allocated=sum(guest["memory"] for guest in running),
                logical_cpus=cpus, vcpus_allocated=sum(guest["vcpus"] for guest in running), maintenance=maintenance)
    for guest in guests:
        guest["hypervisor"] = name
    return dict(name=name, reachable=reachable, host=host if reachable else None, guests=guests if reachable else [])


def guest(name, memory_gib=2, vcpus=2, state="running", tags=None):
    return dict(name=name, uuid="uuid-" + name, memory=int(memory_gib * GIB), vcpus=vcpus, state=state, tags=tags or {})


def test_guests_spread_biggest_first_and_stopped_ones_stay():
    fleet = [hypervisor("kvm1", [guest("a", 4), guest("b", 2), guest("c", 1), guest("off", 8, state="stopped")]),
             hypervisor("kvm2", []), hypervisor("kvm3", [guest("x", 2)])]
    moves, stays, _rooms = plan_drain(fleet, ["kvm1"])
    assert [(move["guest"], move["destination"]) for move in moves] == [("a", "kvm2"), ("b", "kvm3"), ("c", "kvm2")]
    assert stays == []


def test_pinned_guests_and_guests_without_room_stay_with_a_reason():
    fleet = [hypervisor("kvm1", [guest("pinned", tags={"migratable": False}), guest("huge", 30)]),
             hypervisor("kvm2", [], memory_gib=16)]
    moves, stays, _rooms = plan_drain(fleet, ["kvm1"])
    assert moves == []
    reasons = {stay["guest"]: stay["reason"] for stay in stays}
    assert reasons["pinned"] == "pinned (tag migratable=false)"
    assert reasons["huge"].startswith("no host has room for 30 GiB and 2 vCPUs (most room: kvm2 with 15 GiB")


def test_hosts_in_maintenance_unreachable_or_draining_receive_nothing():
    fleet = [hypervisor("kvm1", [guest("a")]), hypervisor("kvm2", [guest("b")]),
             hypervisor("kvm3", [], maintenance=dict(since=1, reason="x", by="y")),
             hypervisor("kvm4", [], reachable=False), hypervisor("kvm5", [])]
    moves, _stays, _rooms = plan_drain(fleet, ["kvm1", "kvm2"])
    assert {move["destination"] for move in moves} == {"kvm5"}
    assert set(rooms(fleet, {"kvm1"})) == {"kvm2", "kvm5"}
    moves, stays, _rooms = plan_drain(fleet[:4], ["kvm1", "kvm2"])
    assert moves == [] and stays[0]["reason"].startswith("no host may receive it")


def test_vcpus_limit_by_overcommit_and_memory_keeps_the_reserve():
    fleet = [hypervisor("kvm1", [guest("wide", 1, vcpus=9)]), hypervisor("kvm2", [], cpus=2)]
    assert plan_drain(fleet, ["kvm1"], cpu_overcommit=4.0)[0] == []  # 2 x 4 = 8 vCPUs < 9
    assert len(plan_drain(fleet, ["kvm1"], cpu_overcommit=5.0)[0]) == 1
    tight = [hypervisor("kvm1", [guest("g", 15.5)]), hypervisor("kvm2", [], memory_gib=16)]
    assert plan_drain(tight, ["kvm1"])[0] == []  # 16 GiB less the 1 GiB reserve leaves 15 GiB
    assert len(plan_drain(tight, ["kvm1"], memory_reserve=0)[0]) == 1


def test_a_retry_takes_another_host_with_room():
    fleet = [hypervisor("kvm1", [guest("a", 4)]), hypervisor("kvm2", []), hypervisor("kvm3", [], memory_gib=8)]
    room_by_name = rooms(fleet, {"kvm1"})
    first = choose(dict(memory=4 * GIB, vcpus=2), room_by_name)
    assert first.name == "kvm2"
    assert choose(dict(memory=4 * GIB, vcpus=2), room_by_name, excluded=("kvm2",)).name == "kvm3"
    assert choose(dict(memory=8 * GIB, vcpus=2), room_by_name, excluded=("kvm2",)) is None
