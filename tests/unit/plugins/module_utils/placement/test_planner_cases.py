"""Hand-made fleets, one per behaviour and per explanation the planner gives."""

import pytest

from ansible_collections.kvmops.virt.plugins.module_utils.placement.planner import plan
from ansible_collections.kvmops.virt.plugins.module_utils.placement.snapshot import PlanError, from_fleet

from plan_checks import check_plan

NOW = 1_000_000


def host(name, cpus=4, memory_mb=8192, **extra):
    return dict(name=name, cpus=cpus, memory_mb=memory_mb, **extra)


def guest(name, where, cpu, memory_mb=1024, vcpus=1, **tags):
    record = dict(name=name, host=where, cpu_cores=cpu, memory_mb=memory_mb, vcpus=vcpus, tags=tags)
    if "last_migrated" in tags:
        record["last_migrated"] = tags.pop("last_migrated")
    return record


def planned(snapshot, policy="hotspot", **settings):
    settings = dict(dict(now=NOW), **settings)
    result = plan(snapshot, policy, **settings)
    check_plan(snapshot, policy, settings, result)
    return result


def moves(result):
    return [(move["guest"], move["source"], move["destination"], move["wave"]) for move in result["plan"]]


def only_reason(result):
    [problem] = result["unresolved"]
    return problem, {item["guest"]: item["reason"] for item in problem["guests"]}


def test_a_hot_host_sheds_the_one_cheapest_guest_that_clears_it_to_the_coolest_host():
    snapshot = dict(hosts=[host("a"), host("b"), host("c")], guests=[
        guest("big", "a", 2.0, memory_mb=4096), guest("small", "a", 1.5, memory_mb=512), guest("tiny", "a", 0.2),
        guest("b1", "b", 1.0), guest("c1", "c", 2.0)])
    result = planned(snapshot)
    # 3.7 of 4 cores, 80% is 3.2: "small" alone clears it and copies the least memory
    assert moves(result) == [("small", "a", "b", 1)]
    assert result["plan"][0]["reason"] == "relieve a: CPU 92% above cpu_high 80%"
    assert result["summary"]["hot_hosts_after"] == 0 and not result["unresolved"]


def test_fewest_moves_when_no_single_guest_is_enough():
    snapshot = dict(hosts=[host("a", cpus=8), host("b", cpus=8), host("c", cpus=8)], guests=[
        guest("a%d" % number, "a", 1.5) for number in range(6)] + [guest("b1", "b", 1.0)])
    # 9 cores on 8, 6.4 allowed: two 1.5-core guests are the fewest that clear it
    result = planned(snapshot)
    assert result["summary"]["migrations"] == 2 and result["summary"]["hot_hosts_after"] == 0


def test_memory_hot_spot():
    snapshot = dict(hosts=[host("a"), host("b")],
                    guests=[guest("m1", "a", 0.1, memory_mb=4096), guest("m2", "a", 0.1, memory_mb=3584)])
    result = planned(snapshot)
    assert moves(result) == [("m2", "a", "b", 1)]
    assert "memory 94% above memory_high 90%" in result["plan"][0]["reason"]


@pytest.mark.parametrize("tags, expected", [
    (dict(migratable=False), "tagged migratable=false"),
    (dict(migratable="no"), "tagged migratable=false"),
    (dict(last_migrated=NOW - 60), "migrated 60 s ago; cooldown is 3600 s"),
])
def test_a_guest_that_may_not_move_says_why(tags, expected):
    snapshot = dict(hosts=[host("a"), host("b")], guests=[guest("g", "a", 3.9, **tags)])
    problem, reasons = only_reason(planned(snapshot))
    assert problem["host"] == "a" and problem["problem"] == "CPU 98% above cpu_high 80%"
    assert reasons == {"g": expected}


@pytest.mark.parametrize("other_hosts, guests_elsewhere, settings, expected", [
    ([host("b", cpus=2)], [guest("b1", "b", 1.5)], {}, "CPU would pass cpu_target on 1 host"),
    ([host("b", cpus=16, memory_mb=2048)], [guest("b1", "b", 0.1, memory_mb=1024)], {},
     "memory would pass memory_high on 1 host"),
    ([host("b", cpus=16)], [guest("b1", "b", 0.0, vcpus=3)], dict(cpu_overcommit=0.25),
     "vCPUs would pass cpu_overcommit on 1 host"),
    ([host("b", cpus=16)], [guest("b1", "b", 0.1, anti_affinity_group="web")], {},
     "runs a guest of its anti-affinity group on 1 host"),
    ([host("b", maintenance=True)], [], {}, "in maintenance on 1 host"),
    ([host("b")], [], dict(exclude=["b"]), "excluded on 1 host"),
    ([host("b", reachable=False)], [], {}, "unreachable on 1 host"),
])
def test_no_destination_counts_each_rule_that_refused(other_hosts, guests_elsewhere, settings, expected):
    snapshot = dict(hosts=[host("a")] + other_hosts, guests=[
        guest("g", "a", 3.9, memory_mb=1024, vcpus=2, anti_affinity_group="web")] + guests_elsewhere)
    problem, reasons = only_reason(planned(snapshot, **settings))
    assert reasons["g"].startswith("no host can take it (3.90 cores, 1024 MiB, 2 vCPUs): ")
    assert reasons["g"].endswith(expected), reasons["g"]
    assert problem["reason"] == "1 without a destination"


def test_max_migrations_is_a_reason():
    snapshot = dict(hosts=[host("a"), host("b", cpus=16), host("c")], guests=[
        guest("g1", "a", 2.0), guest("g2", "a", 2.0), guest("c1", "c", 2.0), guest("c2", "c", 2.0)])
    result = planned(snapshot, max_migrations=1)
    assert moves(result) == [("g1", "a", "b", 1)]
    problem, reasons = only_reason(result)
    assert problem["host"] == "c" and reasons == {"c1": "max_migrations (1) reached", "c2": "max_migrations (1) reached"}


def test_a_guest_that_uses_no_cpu_is_not_moved_for_a_cpu_hot_spot():
    snapshot = dict(hosts=[host("a"), host("b", cpus=1)], guests=[guest("idle", "a", 0.0), guest("busy", "a", 3.9)])
    _problem, reasons = only_reason(planned(snapshot))
    assert reasons["idle"] == "moving it would not help: it uses 0.00 cores and 1024 MiB"
    assert reasons["busy"].startswith("no host can take it")


def test_an_affinity_group_moves_whole_or_not_at_all():
    snapshot = dict(hosts=[host("a", cpus=8), host("b", cpus=16)], guests=[
        guest("app", "a", 3.5, affinity_group="shop"), guest("db", "a", 3.5, affinity_group="shop"),
        guest("other", "a", 0.3)])
    result = planned(snapshot)
    assert sorted(moves(result)) == [("app", "a", "b", 1), ("db", "a", "b", 1)]
    pinned = dict(snapshot, guests=[dict(item, tags=dict(item["tags"], migratable=False)) if item["name"] == "db" else item
                                    for item in snapshot["guests"]])
    _problem, reasons = only_reason(planned(pinned))
    assert reasons["app, db (affinity group shop)"] == "db: tagged migratable=false"


def test_a_move_that_needs_room_waits_for_the_move_that_makes_it():
    # a is hot; only b can take a's guest, and only once b1 has left for c
    snapshot = dict(hosts=[host("a"), host("b"), host("c", cpus=2)], guests=[
        guest("g", "a", 2.0), guest("a1", "a", 1.5, migratable=False), guest("b1", "b", 1.5), guest("b2", "b", 1.0),
        guest("c1", "c", 0.0)])
    result = planned(snapshot)
    assert moves(result) == [("b1", "b", "c", 1), ("g", "a", "b", 2)]
    assert result["plan"][0]["reason"] == "make room on b for g"


def test_waves_respect_the_concurrency_limits():
    snapshot = dict(hosts=[host("a", cpus=16), host("b", cpus=16), host("c", cpus=16)],
                    guests=[guest("g%d" % number, "a", 1.5) for number in range(10)])
    result = planned(snapshot, policy="evacuate", drain=["a"], max_migrations=0, max_per_destination=1, max_per_source=2)
    per_wave = {}
    for move in result["plan"]:
        per_wave.setdefault(move["wave"], []).append(move)
    assert len(per_wave) == 5 and all(len(batch) == 2 for batch in per_wave.values())
    assert all(len({move["destination"] for move in batch}) == 2 for batch in per_wave.values())


def test_evacuate_spreads_and_explains_what_stays():
    snapshot = dict(hosts=[host("a"), host("b"), host("c")], guests=[
        guest("g1", "a", 0.5, memory_mb=2048), guest("g2", "a", 0.5, memory_mb=2048),
        guest("pinned", "a", 0.1, migratable=False), guest("recent", "a", 0.1, last_migrated=NOW - 5)])
    result = planned(snapshot, policy="evacuate", drain=["a"])
    assert {move["destination"] for move in result["plan"] if move["guest"] in ("g1", "g2")} == {"b", "c"}
    assert "recent" in [move["guest"] for move in result["plan"]]  # a drain overrides the cooldown
    problem, reasons = only_reason(result)
    assert problem["problem"] == "draining: 1 guest cannot leave" and reasons == {"pinned": "tagged migratable=false"}
    assert [view["status"] for view in result["hosts_after"]] == ["draining", "ok", "ok"]


def test_balance_moves_only_while_each_move_is_worth_it():
    snapshot = dict(hosts=[host("a"), host("b")], guests=[
        guest("g1", "a", 1.0), guest("g2", "a", 1.0), guest("g3", "a", 0.1), guest("b1", "b", 0.2)])
    result = planned(snapshot, policy="balance", min_improvement=5)
    assert [move["guest"] for move in result["plan"]] == ["g1"]
    assert result["summary"]["cpu_spread_after"] < result["summary"]["cpu_spread_before"]
    assert planned(snapshot, policy="balance", min_improvement=60)["plan"] == []


def test_consolidate_empties_the_least_loaded_hosts_and_lists_them():
    snapshot = dict(hosts=[host("a"), host("b"), host("c"), host("d")], guests=[
        guest("a1", "a", 2.0), guest("b1", "b", 0.4), guest("c1", "c", 0.3), guest("c2", "c", 0.2, migratable=False)])
    result = planned(snapshot, policy="consolidate", cpu_low=25)
    assert moves(result) == [("b1", "b", "a", 1)]
    assert result["power_off"] == ["b", "d"]
    assert result["not_emptied"] == [dict(host="c", reason="c2 stays: tagged migratable=false")]


def test_new_guests_are_placed_in_wave_zero():
    snapshot = dict(hosts=[host("a"), host("b")], guests=[guest("new", None, 1.0), guest("a1", "a", 1.0)])
    result = planned(snapshot)
    assert moves(result) == [("new", None, "b", 0)]
    assert result["summary"]["placements"] == 1 and result["summary"]["migrations"] == 0
    full = dict(snapshot, guests=[guest("huge", None, 9.0)])
    problem, reasons = only_reason(planned(full))
    assert problem["host"] is None and problem["problem"] == "cannot place huge"
    assert reasons["huge"].endswith("CPU would pass cpu_target on 2 hosts")


def test_history_sizes_a_guest_for_its_recent_peaks():
    snapshot = dict(hosts=[host("a"), host("b", cpus=8)], guests=[
        dict(guest("spiky", "a", 1.0), cpu_history=[1.0, 3.5, 3.6, 1.0]), guest("a1", "a", 0.5)])
    result = planned(snapshot, history_percentile=75)
    assert result["hosts_before"][0]["cpu_percent"] == 37.5 and result["hosts_before"][0]["cpu_planned_percent"] == 100.0
    assert moves(result) == [("spiky", "a", "b", 1)]


@pytest.mark.parametrize("snapshot, settings, message", [
    ([], {}, "the snapshot must be a mapping"),
    (dict(hosts=[]), {}, "the snapshot has no hosts"),
    (dict(hosts=[dict(name="a", cpus="many", memory_mb=1)]), {}, "hosts[0].cpus must be a number, got 'many'"),
    (dict(hosts=[dict(name="a", cpus=0, memory_mb=1)]), {}, "hosts[0].cpus must be above 0.0, got 0"),
    (dict(hosts=[host("a"), host("a")]), {}, "two hosts named 'a'"),
    (dict(hosts=[host("a")], guests=[dict(name="g", host="z", memory_mb=1)]), {}, "guests[0] (g).host: 'z' is not one of"),
    (dict(hosts=[host("a")], guests=[dict(name="g", host="a")]), {}, "guests[0] (g).memory_mb must be a number, got None"),
    (dict(hosts=[host("a")], guests=[dict(name="g", host="a", memory_mb=1, tags=dict(migratable="perhaps"))]), {},
     "tags.migratable must be true or false"),
    (dict(hosts=[host("a")]), dict(drain=["b"]), "drain names hosts the snapshot does not have: b"),
    (dict(hosts=[host("a")]), dict(cpu_target=90), "cpu_target (90) must not be above cpu_high (80)"),
    (dict(hosts=[host("a")]), dict(cpu_low=85, cpu_high=90, cpu_target=80), "cpu_low (85) must be below cpu_target (80)"),
])
def test_bad_input_says_what_and_where(snapshot, settings, message):
    with pytest.raises(PlanError) as caught:
        plan(snapshot, "hotspot", **settings)
    assert message in str(caught.value)


def test_evacuate_needs_hosts_to_drain():
    with pytest.raises(PlanError, match="needs the hosts to drain"):
        plan(dict(hosts=[host("a")]), "evacuate")


def test_from_fleet_keeps_running_guests_once_and_pins_name_clashes():
    gib = 1024 ** 3
    fleet = [
        dict(name="k1", reachable=True, host=dict(logical_cpus=8, memory_total=16 * gib, maintenance=None), guests=[
            dict(name="web", uuid="u1", state="paused", vcpus=2, memory=gib, cpu_cores=0.0, tags={}, last_migrated=None),
            dict(name="off", uuid="u2", state="shutoff", vcpus=2, memory=gib, tags={}),
            dict(name="db", uuid="u3", state="running", vcpus=4, memory=2 * gib, cpu_cores=1.5, tags={}, last_migrated=5)]),
        dict(name="k2", reachable=True, host=dict(logical_cpus=8, memory_total=16 * gib, maintenance=dict(since=1)), guests=[
            dict(name="web", uuid="u1", state="running", vcpus=2, memory=gib, cpu_cores=0.7, tags={"role": "web"}),
            dict(name="db", uuid="u9", state="running", vcpus=1, memory=gib, cpu_cores=0.1, tags={})]),
        dict(name="k3", reachable=False, host=None, guests=[], error="refused"),
    ]
    snapshot = from_fleet(fleet)
    assert snapshot["hosts"] == [dict(name="k1", cpus=8, memory_mb=16384.0, maintenance=False),
                                 dict(name="k2", cpus=8, memory_mb=16384.0, maintenance=True),
                                 dict(name="k3", cpus=1, memory_mb=1, reachable=False)]
    by_name = {item["name"]: item for item in snapshot["guests"]}
    assert sorted(by_name) == ["db", "db@k2", "web"]
    assert by_name["web"]["host"] == "k2" and by_name["web"]["cpu_cores"] == 0.7  # where it runs, not where it arrives
    assert by_name["db"]["last_migrated"] == 5 and by_name["db"]["memory_mb"] == 2048.0
    assert by_name["db@k2"]["tags"] == dict(migratable=False)
    plan(snapshot, "hotspot")  # and the planner takes it


def growing(name, where, cpu, vcpus=1, max_vcpus=2, memory_mb=1024, max_memory_mb=None, memory_used_mb=None, **tags):
    record = guest(name, where, cpu, memory_mb=memory_mb, vcpus=vcpus, **dict(dict(autogrow=True), **tags))
    record.update(max_vcpus=max_vcpus, max_memory_mb=max_memory_mb, memory_used_mb=memory_used_mb)
    return record


def test_when_no_move_helps_a_saturated_tagged_guest_grows_within_its_maxima():
    # every host is hot: nothing can move, so the busy guests that allow it grow in place
    snapshot = dict(hosts=[host("a", cpus=2), host("b", cpus=2)], guests=[
        growing("full", "a", 2.0, vcpus=2, max_vcpus=8), guest("other", "a", 0.0),
        growing("idle", "a", 0.1), guest("b1", "b", 1.9, vcpus=2)])
    result = planned(snapshot, cpu_high=80)
    assert result["plan"] == [] and result["summary"]["growth"] == 1
    assert result["growth"] == [dict(guest="full", host="a", vcpus=3, vcpus_from=2, memory_mb=1024.0, memory_mb_from=1024,
                                     reason="no move relieves a; CPU 100% of 2 vCPUs (at least 90%)")]
    assert result["growth_refused"] == [dict(guest="idle", host="a",
                                             reason="uses 10% of its 1 vCPUs; its balloon reports no memory use")]
    assert result["summary"]["message"].endswith("hot hosts 2 -> 2; 1 guest can grow in place; 2 problems left (see unresolved)")


def test_no_growth_where_a_move_relieves_the_host():
    snapshot = dict(hosts=[host("a", cpus=2), host("b", cpus=4)], guests=[
        growing("full", "a", 1.0), guest("other", "a", 1.0)])
    result = planned(snapshot, cpu_high=80)
    assert len(result["plan"]) == 1 and result["growth"] == [] and result["growth_refused"] == []


def test_growth_stops_at_the_maxima_and_at_the_hosts_limits():
    snapshot = dict(hosts=[host("a", cpus=2, memory_mb=4096)], guests=[
        growing("at-max", "a", 1.0, vcpus=1, max_vcpus=1),
        growing("first", "a", 2.0, vcpus=2, max_vcpus=16, memory_mb=1024, max_memory_mb=4096, memory_used_mb=1000),
        growing("second", "a", 2.0, vcpus=2, max_vcpus=16, memory_mb=1024, max_memory_mb=4096, memory_used_mb=1000)])
    # 5 vCPUs of 6 allowed (cpu_overcommit 3), 3072 MiB of 3686 allowed (memory_high 90%)
    result = planned(snapshot, cpu_high=80, cpu_overcommit=3)
    grown = {item["guest"]: item for item in result["growth"]}
    assert (grown["first"]["vcpus"], grown["first"]["memory_mb"]) == (3, 1536.0)
    # what is left: no vCPU, 102 MiB
    assert (grown["second"]["vcpus"], grown["second"]["memory_mb"]) == (2, 1126.0)
    assert grown["second"]["reason"] == "no move relieves a; memory 98% used (at least 90%)"
    assert [item["reason"] for item in result["growth_refused"]] == [
        "at its most vCPUs (1); its balloon reports no memory use"]


def test_growth_needs_the_tag_and_respects_grow_settings():
    snapshot = dict(hosts=[host("a", cpus=1)], guests=[
        growing("tagged", "a", 0.6, grow="yes", autogrow=False), guest("plain", "a", 0.6)])
    assert planned(snapshot, cpu_high=80)["growth"] == []
    result = planned(snapshot, cpu_high=80, grow_tag="grow", grow_threshold=50, grow_step=100)
    assert [(item["guest"], item["vcpus"]) for item in result["growth"]] == [("tagged", 2)]
    with pytest.raises(PlanError, match="grow_threshold must be at most 100"):
        plan(snapshot, "hotspot", grow_threshold=150)


def test_from_fleet_carries_what_growth_needs():
    fleet = [dict(name="a", reachable=True, host=dict(logical_cpus=2, memory_total=4 << 30), guests=[
        dict(name="g", uuid="u", state="running", vcpus=1, max_vcpus=4, memory=1 << 30, max_memory=2 << 30,
             memory_used=900 << 20, cpu_cores=1.0, tags=dict(autogrow=True))])]
    [record] = from_fleet(fleet)["guests"]
    assert (record["max_vcpus"], record["max_memory_mb"], record["memory_used_mb"]) == (4, 2048.0, 900.0)
