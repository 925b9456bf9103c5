"""Where a drain sends guests (the planner's evacuate policy over a fleet snapshot with each
host's memory reserve) and where a failed move is retried. Draining real hosts is
tests/integration/test_maintenance_on_lab.py."""

from ansible_collections.kvmops.virt.plugins.module_utils.evacuation import DrainPlan

GIB = 1024 ** 3


def hypervisor(name, guests, memory_gib=16, cpus=4, maintenance=None, reachable=True):
    host = dict(memory_total=memory_gib * GIB, logical_cpus=cpus, maintenance=maintenance)
    for guest in guests:
        guest["hypervisor"] = name
    return dict(name=name, reachable=reachable, host=host if reachable else None, guests=guests if reachable else [])


def guest(name, memory_gib=2, vcpus=2, state="running", tags=None, cpu_cores=0.0):
    return dict(name=name, uuid="uuid-" + name, memory=int(memory_gib * GIB), vcpus=vcpus, state=state, tags=tags or {},
                cpu_cores=cpu_cores)


def destinations(drain):
    return [(move["guest"], move["destination"]) for move in drain.moves]


def test_guests_spread_biggest_first_and_stopped_ones_stay():
    fleet = [hypervisor("kvm1", [guest("a", 4), guest("b", 2), guest("c", 1), guest("off", 8, state="stopped")]),
             hypervisor("kvm2", []), hypervisor("kvm3", [guest("x", 2)])]
    drain = DrainPlan(fleet, ["kvm1"])
    assert destinations(drain) == [("a", "kvm2"), ("b", "kvm3"), ("c", "kvm2")]
    assert drain.stays == [] and all(move["reason"] == "evacuate kvm1" for move in drain.moves)


def test_pinned_guests_and_guests_without_room_stay_with_the_planners_reason():
    fleet = [hypervisor("kvm1", [guest("pinned", tags={"migratable": False}), guest("huge", 30)]),
             hypervisor("kvm2", [], memory_gib=16)]
    drain = DrainPlan(fleet, ["kvm1"])
    assert drain.moves == []
    reasons = {stay["guest"]: stay["reason"] for stay in drain.stays}
    assert reasons["pinned"] == "tagged migratable=false"
    assert reasons["huge"].startswith("no host can take it (0.00 cores, 30720 MiB, 2 vCPUs): memory would pass")
    assert {stay["source"] for stay in drain.stays} == {"kvm1"}


def test_hosts_in_maintenance_unreachable_or_draining_receive_nothing():
    fleet = [hypervisor("kvm1", [guest("a")]), hypervisor("kvm2", [guest("b")]),
             hypervisor("kvm3", [], maintenance=dict(since=1, reason="x", by="y")),
             hypervisor("kvm4", [], reachable=False), hypervisor("kvm5", [])]
    assert {destination for _guest, destination in destinations(DrainPlan(fleet, ["kvm1", "kvm2"]))} == {"kvm5"}
    nowhere = DrainPlan(fleet[:4], ["kvm1", "kvm2"])
    assert nowhere.moves == [] and len(nowhere.stays) == 2
    assert "in maintenance on 1 host" in nowhere.stays[0]["reason"] and "unreachable on 1 host" in nowhere.stays[0]["reason"]


def test_vcpus_limit_by_overcommit_and_memory_keeps_the_reserve():
    fleet = [hypervisor("kvm1", [guest("wide", 1, vcpus=9)]), hypervisor("kvm2", [], cpus=2)]
    assert DrainPlan(fleet, ["kvm1"], cpu_overcommit=4.0).moves == []  # 2 x 4 = 8 vCPUs < 9
    assert len(DrainPlan(fleet, ["kvm1"], cpu_overcommit=5.0).moves) == 1
    tight = [hypervisor("kvm1", [guest("g", 15.5)]), hypervisor("kvm2", [], memory_gib=16)]
    assert DrainPlan(tight, ["kvm1"]).moves == []  # 16 GiB less the 1 GiB reserve leaves 15 GiB
    assert len(DrainPlan(tight, ["kvm1"], memory_reserve=0).moves) == 1


def test_measured_cpu_keeps_destinations_below_the_target():
    fleet = [hypervisor("kvm1", [guest("busy", cpu_cores=2.0)]), hypervisor("kvm2", [guest("x", cpu_cores=2.5)]),
             hypervisor("kvm3", [guest("y", cpu_cores=1.0)])]
    assert destinations(DrainPlan(fleet, ["kvm1"])) == [("busy", "kvm3")]  # 3 of 4 cores; kvm2 would reach 4.5
    assert destinations(DrainPlan(fleet, ["kvm1"], cpu_target=50)) == []


def test_a_retry_goes_where_the_planner_says_without_the_failed_host():
    fleet = [hypervisor("kvm1", [guest("a", 4), guest("b", 4)]), hypervisor("kvm2", [], memory_gib=12),
             hypervisor("kvm3", [], memory_gib=8), hypervisor("kvm4", [], memory_gib=6)]
    drain = DrainPlan(fleet, ["kvm1"])
    assert destinations(drain) == [("a", "kvm2"), ("b", "kvm3")]
    # a's move to kvm2 failed: kvm3 already takes b (4 of its 7 GiB), so a goes to kvm4
    assert drain.elsewhere("a", "kvm2") == "kvm4"
    # and failed there too: kvm2 is out for a, kvm3 has 3 GiB left, kvm4 is out too
    assert drain.elsewhere("a", "kvm4") is None
