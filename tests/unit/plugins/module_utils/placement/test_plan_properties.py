"""Properties of every plan on random fleets (hypothesis): the rules always hold, the plan is the
same for the same input, and hot spots are cleared whenever some sequence of moves clears them
(found by brute force on small fleets)."""

import collections
import copy
import random

from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from ansible_collections.kvmops.virt.plugins.module_utils.placement.planner import plan

from plan_checks import Rules, check_plan, planned_cpu

NOW = 1_000_000


@st.composite
def fleets(draw, max_hosts=6, max_guests=16, history=True):
    host_count = draw(st.integers(2, max_hosts))
    hosts = []
    for number in range(host_count):
        host = dict(name="h%d" % number, cpus=draw(st.sampled_from([2, 4, 8])),
                    memory_mb=draw(st.sampled_from([2048, 4096, 8192])))
        if draw(st.integers(0, 6)) == 0:
            host["maintenance"] = True
        if draw(st.integers(0, 8)) == 0:
            host["max_incoming"] = 2
        hosts.append(host)
    guests = []
    for number in range(draw(st.integers(0, max_guests))):
        tags = {}
        if draw(st.integers(0, 9)) == 0:
            tags["migratable"] = False
        affinity = draw(st.sampled_from([None, None, None, "x", "y"]))
        if affinity:
            tags["affinity_group"] = affinity
        anti = draw(st.sampled_from([None, None, None, "p", "q"]))
        if anti:
            tags["anti_affinity_group"] = anti
        guest = dict(name="g%02d" % number, host=draw(st.sampled_from([host["name"] for host in hosts])),
                     vcpus=draw(st.integers(1, 4)), memory_mb=draw(st.sampled_from([256, 512, 1024, 2048])),
                     cpu_cores=draw(st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.5, 2.5])), tags=tags,
                     last_migrated=draw(st.sampled_from([None, None, NOW - 60, NOW - 100000])))
        if draw(st.integers(0, 3)) == 0:
            tags["autogrow"] = draw(st.sampled_from([True, "yes", False]))
            guest["max_vcpus"] = guest["vcpus"] + draw(st.integers(0, 4))
            guest["max_memory_mb"] = guest["memory_mb"] * draw(st.sampled_from([1, 2, 4]))
            guest["memory_used_mb"] = draw(st.sampled_from([None, guest["memory_mb"] * 0.5, guest["memory_mb"]]))
        if history and draw(st.booleans()):
            guest["cpu_history"] = draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0]), min_size=1, max_size=6))
        guests.append(guest)
    return dict(hosts=hosts, guests=guests)


@st.composite
def plan_settings(draw, snapshot, policy):
    high = draw(st.sampled_from([60.0, 75.0, 80.0, 95.0]))
    chosen = dict(now=NOW, cpu_high=high, cpu_target=draw(st.sampled_from([high, high - 10])),
                  cpu_low=draw(st.sampled_from([20.0, 40.0])),
                  memory_high=draw(st.sampled_from([80.0, 90.0, 100.0])),
                  max_migrations=draw(st.sampled_from([0, 1, 3, 20])),
                  max_per_destination=draw(st.integers(1, 2)), max_per_source=draw(st.integers(1, 3)),
                  max_parallel=draw(st.integers(1, 4)), cooldown=3600,
                  grow_threshold=draw(st.sampled_from([50.0, 90.0])), grow_step=draw(st.sampled_from([50.0, 100.0])))
    if policy == "evacuate":
        names = [host["name"] for host in snapshot["hosts"]]
        chosen["drain"] = draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
    last = snapshot["hosts"][-1]["name"]
    if draw(st.integers(0, 4)) == 0 and last not in chosen.get("drain", ()):
        chosen["exclude"] = [last]
    return chosen


@st.composite
def cases(draw):
    snapshot = draw(fleets())
    policy = draw(st.sampled_from(["hotspot", "balance", "consolidate", "evacuate"]))
    return snapshot, policy, draw(plan_settings(snapshot, policy))


@given(cases())
@hypothesis_settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_plan_obeys_the_rules(case):
    snapshot, policy, chosen = case
    check_plan(snapshot, policy, chosen, plan(copy.deepcopy(snapshot), policy, **chosen))


@given(cases())
@hypothesis_settings(max_examples=100, deadline=None)
def test_the_same_input_gives_the_same_plan_in_any_order(case):
    snapshot, policy, chosen = case
    shuffled = copy.deepcopy(snapshot)
    random.Random(7).shuffle(shuffled["hosts"])
    random.Random(7).shuffle(shuffled["guests"])
    assert plan(copy.deepcopy(snapshot), policy, **chosen) == plan(shuffled, policy, **chosen)


@given(cases())
@hypothesis_settings(max_examples=150, deadline=None)
def test_a_drain_empties_the_host_or_says_why(case):
    snapshot, policy, chosen = case
    if policy != "evacuate":
        return
    result = plan(copy.deepcopy(snapshot), policy, **chosen)
    _rules, placement = check_plan(snapshot, policy, chosen, result)
    left = {host for host in chosen["drain"] if any(where == host for where in placement.values())}
    assert left == {item["host"] for item in result["unresolved"]}


def clearing_moves(snapshot, settings):
    """The fewest unit moves that leave no hot host able to receive, by breadth-first search over
    every sequence of valid moves (each guest moves at most once); None when none exists."""
    rules = Rules(snapshot, "hotspot", settings)
    pool = [name for name in rules.hosts if rules.receives(name)]
    units = collections.defaultdict(list)
    for name, guest in sorted(rules.guests.items()):
        group = (guest.get("tags") or {}).get("affinity_group")
        units[(guest["host"], group or name)].append(name)
    unit_list = list(units.values())
    start = {name: guest["host"] for name, guest in rules.guests.items()}

    def hot_left(placement):
        loads = rules.loads(placement)
        return any(rules.hot(name, loads[name]) for name in pool)

    def movable(members):
        return not any(rules.pinned(rules.guests[name]) or rules.cooling(rules.guests[name]) for name in members)

    if not hot_left(start):
        return 0
    frontier, seen = [(start, 0)], {tuple(sorted(start.items()))}
    while frontier:
        next_frontier = []
        for placement, depth in frontier:
            loads = rules.loads(placement)
            for members in unit_list:
                source = placement[members[0]]
                if source != start[members[0]] or source not in pool or not movable(members):
                    continue
                cpu = sum(planned_cpu(rules.guests[name], rules.percentile) for name in members)
                memory = sum(rules.guests[name]["memory_mb"] for name in members)
                vcpus = sum(rules.guests[name].get("vcpus", 1) for name in members)
                groups = {(rules.guests[name].get("tags") or {}).get("anti_affinity_group") for name in members} - {None}
                for destination in pool:
                    if destination == source:
                        continue
                    load = loads[destination]
                    if not rules.within(destination, [load[0] + cpu, load[1] + memory, load[2] + vcpus]):
                        continue
                    if any((rules.guests[other].get("tags") or {}).get("anti_affinity_group") in groups
                           for other, where in placement.items() if where == destination):
                        continue
                    moved = dict(placement)
                    for name in members:
                        moved[name] = destination
                    key = tuple(sorted(moved.items()))
                    if key in seen:
                        continue
                    seen.add(key)
                    if not hot_left(moved):
                        return depth + 1
                    next_frontier.append((moved, depth + 1))
        frontier = next_frontier
    return None


@given(fleets(max_hosts=4, max_guests=7, history=False), st.sampled_from([60.0, 75.0, 80.0]))
@hypothesis_settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_hot_spots_are_cleared_whenever_some_plan_clears_them(snapshot, high):
    chosen = dict(now=NOW, cpu_high=high, max_migrations=0)
    best = clearing_moves(snapshot, chosen)
    result = plan(copy.deepcopy(snapshot), "hotspot", **chosen)
    check_plan(snapshot, "hotspot", chosen, result)
    if best is not None:
        assert result["summary"]["hot_hosts_after"] == 0, (best, result["unresolved"])
    else:
        assert result["summary"]["hot_hosts_after"] > 0
