"""An independent check of a plan against its snapshot: the planner's rules written again, from
the documentation, so a test compares two implementations rather than one with itself."""

import math

EPS = 1e-6


def planned_cpu(guest, percentile_rank):
    history = guest.get("cpu_history") or []
    current = guest.get("cpu_cores") or 0.0
    if not history:
        return current
    ordered = sorted(history)
    rank = max(1, math.ceil(percentile_rank / 100.0 * len(ordered)))
    return max(current, ordered[min(rank, len(ordered)) - 1])


def is_true(value):
    return value if isinstance(value, bool) else str(value).lower() in ("true", "yes", "on", "1")


class Rules:
    """Limits and roles of a snapshot's hosts, per the documented settings."""

    def __init__(self, snapshot, policy, settings):
        self.settings = dict(settings)
        self.policy = policy
        high = settings.get("cpu_high", 80.0)
        target = settings.get("cpu_target") or high
        memory_high = settings.get("memory_high", 90.0)
        self.hosts = {host["name"]: host for host in snapshot["hosts"]}
        self.guests = {guest["name"]: guest for guest in snapshot["guests"]}
        self.cpu_limit, self.cpu_hot, self.memory_limit, self.vcpu_limit, self.memory_total = {}, {}, {}, {}, {}
        for name, host in self.hosts.items():
            total = host["memory_mb"] * (host.get("memory_overcommit") or settings.get("memory_overcommit", 1.0))
            self.memory_total[name] = total
            self.memory_limit[name] = total * memory_high / 100.0
            self.cpu_limit[name] = host["cpus"] * target / 100.0
            self.cpu_hot[name] = host["cpus"] * high / 100.0
            self.vcpu_limit[name] = host["cpus"] * (host.get("cpu_overcommit") or settings.get("cpu_overcommit", 4.0))
        self.percentile = settings.get("history_percentile", 90.0)

    def receives(self, name):
        host = self.hosts[name]
        return (host.get("reachable", True) and not host.get("maintenance") and name not in self.settings.get("exclude", ())
                and name not in self.settings.get("drain", ()))

    def pinned(self, guest):
        return not is_true((guest.get("tags") or {}).get("migratable", True))

    def cooling(self, guest):
        last = guest.get("last_migrated")
        return (self.policy != "evacuate" and last is not None
                and self.settings["now"] - last < self.settings.get("cooldown", 3600))

    def loads(self, placement):
        """host -> [cpu, memory, vcpus] for guest -> host."""
        loads = {name: [0.0, 0.0, 0] for name in self.hosts}
        for guest_name, host in placement.items():
            if host is None:
                continue
            guest = self.guests[guest_name]
            load = loads[host]
            load[0] += planned_cpu(guest, self.percentile)
            load[1] += guest["memory_mb"]
            load[2] += guest.get("vcpus", 1)
        return loads

    def hot(self, name, load):
        return load[0] > self.cpu_hot[name] + EPS or load[1] > self.memory_limit[name] + EPS

    def within(self, name, load):
        return (load[0] <= self.cpu_limit[name] + EPS and load[1] <= self.memory_limit[name] + EPS
                and load[2] <= self.vcpu_limit[name] + EPS)


def check_plan(snapshot, policy, settings, result):
    """Assert every documented rule on ``result``; returns the final placement."""
    rules = Rules(snapshot, policy, settings)
    placement = {guest["name"]: guest.get("host") for guest in snapshot["guests"]}
    moves = result["plan"]
    names = [move["guest"] for move in moves]
    assert len(names) == len(set(names)), "a guest moves twice: %s" % names
    migrations = [move for move in moves if move["source"] is not None]
    limit = settings.get("max_migrations", 20)
    if limit:
        assert len(migrations) <= limit
    waves = [move["wave"] for move in moves]
    assert waves == sorted(waves), "the plan is not in wave order"
    for move in moves:
        guest = rules.guests[move["guest"]]
        assert move["source"] == guest.get("host")
        assert (move["wave"] == 0) == (move["source"] is None)
        assert rules.receives(move["destination"]), "%s sent to %s" % (move["guest"], move["destination"])
        if move["source"] is not None:
            assert not rules.pinned(guest), "pinned %s moved" % guest["name"]
            assert not rules.cooling(guest), "%s moved in its cooldown" % guest["name"]
    # placements first, then each wave runs with its arrivals counted on the destination
    for move in moves:
        if move["source"] is None:
            placement[move["guest"]] = move["destination"]
    before = dict(placement)
    for wave in sorted({move["wave"] for move in migrations}):
        in_wave = [move for move in migrations if move["wave"] == wave]
        during = rules.loads(placement)
        for move in in_wave:
            guest = rules.guests[move["guest"]]
            load = during[move["destination"]]
            load[0] += planned_cpu(guest, rules.percentile)
            load[1] += guest["memory_mb"]
            load[2] += guest.get("vcpus", 1)
        for move in in_wave:
            assert rules.within(move["destination"], during[move["destination"]]), (
                "wave %d overloads %s: %s" % (wave, move["destination"], during[move["destination"]]))
        _check_concurrency(rules, settings, in_wave)
        for move in in_wave:
            placement[move["guest"]] = move["destination"]
    _check_groups(rules, before, placement, migrations)
    _check_growth(rules, placement, result)
    after = {host["name"]: host for host in result["hosts_after"]}
    for name, load in rules.loads(placement).items():
        assert after[name]["guests"] == sum(1 for host in placement.values() if host == name)
        assert abs(after[name]["cpu_planned_percent"] - 100.0 * load[0] / rules.hosts[name]["cpus"]) < 0.11
    return rules, placement


def _check_concurrency(rules, settings, in_wave):
    groups = {}
    for move in in_wave:
        group = (rules.guests[move["guest"]].get("tags") or {}).get("affinity_group")
        groups.setdefault((move["source"], group if group else move["guest"]), []).append(move)
    if len(groups) > 1:
        assert len(in_wave) <= settings.get("max_parallel", 4)
    for side, default, key in (("destination", settings.get("max_per_destination", 1), "max_incoming"),
                               ("source", settings.get("max_per_source", 2), "max_outgoing")):
        per_host = {}
        for members in groups.values():
            per_host.setdefault(members[0][side], []).append(len(members))
        for host, sizes in per_host.items():
            if len(sizes) > 1:
                assert sum(sizes) <= (rules.hosts[host].get(key) or default), "too many moves at %s" % host


def _check_groups(rules, before, after, migrations):
    wave_of = {move["guest"]: move["wave"] for move in migrations}
    by_group = {}
    for name, guest in rules.guests.items():
        group = (guest.get("tags") or {}).get("affinity_group")
        if group:
            by_group.setdefault((group, before[name]), []).append(name)
    for (group, _host), members in by_group.items():
        assert len({after[name] for name in members}) == 1, "affinity group %s split: %s" % (group, members)
        assert len({wave_of.get(name) for name in members}) == 1, "affinity group %s moved apart" % group
    # guests of one anti-affinity group that were apart stay apart
    by_anti = {}
    for name, guest in rules.guests.items():
        group = (guest.get("tags") or {}).get("anti_affinity_group")
        if group:
            by_anti.setdefault(group, []).append(name)
    for group, members in by_anti.items():
        for first in members:
            for second in members:
                if first < second and after[first] is not None and after[first] == after[second]:
                    assert before[first] == before[second], "anti-affinity group %s: %s and %s meet" % (group, first, second)


def _check_growth(rules, placement, result):
    """Growth: only tagged guests of hosts left hot, using at least grow_threshold of what they
    have, never past their maxima nor the host's vCPU and memory limits; every tagged guest of
    such a host is either grown or refused with a reason."""
    tag = rules.settings.get("grow_tag", "autogrow")
    threshold = rules.settings.get("grow_threshold", 90.0) / 100.0
    loads = rules.loads(placement)
    hot = {name for name, load in loads.items() if rules.receives(name) and rules.hot(name, load)}
    tagged = {name for name, host in placement.items()
              if host in hot and is_true((rules.guests[name].get("tags") or {}).get(tag, False))}
    grown = {item["guest"]: item for item in result["growth"]}
    refused = {item["guest"]: item for item in result["growth_refused"]}
    assert set(grown) | set(refused) == tagged and not set(grown) & set(refused), (tagged, grown, refused)
    assert all(item["reason"] for item in refused.values())
    for name, item in grown.items():
        guest = rules.guests[name]
        assert item["host"] == placement[name]
        vcpus, memory = guest.get("vcpus", 1), guest["memory_mb"]
        assert item["vcpus_from"] == vcpus and item["memory_mb_from"] == memory
        assert (item["vcpus"], item["memory_mb"]) != (vcpus, memory), item
        if item["vcpus"] != vcpus:
            assert vcpus < item["vcpus"] <= guest["max_vcpus"]
            assert planned_cpu(guest, rules.percentile) >= threshold * vcpus - EPS
        if item["memory_mb"] != memory:
            assert memory < item["memory_mb"] <= guest["max_memory_mb"] and item["memory_mb"] == int(item["memory_mb"])
            assert guest["memory_used_mb"] >= threshold * memory - EPS
        load = loads[item["host"]]
        load[1] += item["memory_mb"] - memory
        load[2] += item["vcpus"] - vcpus
        if item["vcpus"] != vcpus:
            assert load[2] <= rules.vcpu_limit[item["host"]] + EPS, "growth passes cpu_overcommit on %s" % item["host"]
        if item["memory_mb"] != memory:
            assert load[1] <= rules.memory_limit[item["host"]] + EPS, "growth passes memory_high on %s" % item["host"]
