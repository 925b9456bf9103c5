"""How close the planner's hot-spot relief comes to the fewest migrations possible.

    python tests/benchmarks/placement/milp_benchmark.py                 # 100 instances, 10 hosts x 60 guests
    python tests/benchmarks/placement/milp_benchmark.py --instances 20 --hosts 8 --guests 40 --seed 3

Each random instance has a few hot hosts. An integer program (HiGHS through highspy) finds the
fewest guests to move so that no host is above cpu_high or memory_high, with pinned guests
fixed and anti-affinity groups apart; the planner's ``hotspot`` plan is then counted against it.
The program asks only for a final placement, not for an order in which the moves fit, so its
optimum is a lower bound: a ratio of 1.0 is the best possible. Goal (issue 6): at most 1.1 on
average.
"""

import argparse
import random
import statistics
import sys
import time

import highspy

from collection_planner import plan

SETTINGS = dict(cpu_high=80.0, memory_high=90.0, max_migrations=0, now=0, cpu_overcommit=8.0)


def instance(rng, hosts=10, guests=60, hot=3):
    """Hosts of 16 cores and 64 GiB; guests spread at random, with extra CPU on ``hot`` hosts."""
    host_list = [dict(name="h%02d" % number, cpus=16, memory_mb=65536) for number in range(hosts)]
    guest_list = []
    for number in range(guests):
        host = rng.randrange(hosts)
        busy = host < hot
        tags = {}
        if rng.random() < 0.08:
            tags["migratable"] = False
        if rng.random() < 0.15:
            tags["anti_affinity_group"] = "aa%d" % rng.randrange(3)
        guest_list.append(dict(name="g%02d" % number, host=host_list[host]["name"], vcpus=rng.choice([1, 2, 4]),
                               memory_mb=rng.choice([1024, 2048, 4096, 8192]),
                               cpu_cores=round(rng.uniform(0.5, 4.0) if busy else rng.uniform(0.0, 2.0), 2),
                               tags=tags))
    return dict(hosts=host_list, guests=guest_list)


def fewest_moves(snapshot, settings):
    """The minimum number of guests to move (None when no placement clears every hot spot)."""
    hosts, guests = snapshot["hosts"], snapshot["guests"]
    solver = highspy.Highs()
    solver.setOptionValue("output_flag", False)
    solver.setOptionValue("time_limit", 60.0)
    x = {(guest["name"], host["name"]): solver.addBinary() for guest in guests for host in hosts}
    for guest in guests:
        solver.addConstr(solver.qsum(x[guest["name"], host["name"]] for host in hosts) == 1)
        if (guest.get("tags") or {}).get("migratable") is False:
            solver.addConstr(x[guest["name"], guest["host"]] == 1)
    groups = {}
    for guest in guests:
        group = (guest.get("tags") or {}).get("anti_affinity_group")
        if group:
            groups.setdefault(group, []).append(guest)
    for host in hosts:
        name = host["name"]
        solver.addConstr(solver.qsum(guest["cpu_cores"] * x[guest["name"], name] for guest in guests)
                         <= host["cpus"] * settings["cpu_high"] / 100.0)
        solver.addConstr(solver.qsum(guest["memory_mb"] * x[guest["name"], name] for guest in guests)
                         <= host["memory_mb"] * settings["memory_high"] / 100.0)
        solver.addConstr(solver.qsum(guest["vcpus"] * x[guest["name"], name] for guest in guests)
                         <= host["cpus"] * settings["cpu_overcommit"])
        for members in groups.values():
            # members already together may stay so (the planner never separates what it does not move)
            already = sum(1 for guest in members if guest["host"] == name)
            solver.addConstr(solver.qsum(x[guest["name"], name] for guest in members) <= max(1, already))
    solver.minimize(solver.qsum(1 - x[guest["name"], guest["host"]] for guest in guests))
    if solver.modelStatusToString(solver.getModelStatus()) != "Optimal":
        return None
    return round(solver.getInfo().objective_function_value)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--guests", type=int, default=60)
    parser.add_argument("--hot", type=int, default=3, help="hosts given extra CPU")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    ratios, infeasible, not_cleared, cold, solver_seconds, planner_seconds = [], 0, 0, 0, [], []
    for _number in range(args.instances):
        snapshot = instance(rng, args.hosts, args.guests, args.hot)
        started = time.perf_counter()
        best = fewest_moves(snapshot, SETTINGS)
        solver_seconds.append(time.perf_counter() - started)
        started = time.perf_counter()
        result = plan(snapshot, "hotspot", **SETTINGS)
        planner_seconds.append(time.perf_counter() - started)
        if best is None:
            infeasible += 1
            continue
        if best == 0:
            cold += 1
            continue
        if result["summary"]["hot_hosts_after"]:
            not_cleared += 1
            continue
        ratios.append(result["summary"]["migrations"] / best)
    rows = [
        ("instances", "%d (%d hosts x %d guests, %d hot)" % (args.instances, args.hosts, args.guests, args.hot)),
        ("no hot spot / no feasible placement", "%d / %d" % (cold, infeasible)),
        ("planner left hot spots the optimum clears", "%d" % not_cleared),
        ("ratio planner / optimum: mean", "%.3f" % statistics.mean(ratios) if ratios else "-"),
        ("ratio: median / max", "%.3f / %.3f" % (statistics.median(ratios), max(ratios)) if ratios else "-"),
        ("optimal in", "%d of %d" % (sum(1 for ratio in ratios if ratio <= 1.0 + 1e-9), len(ratios))),
        ("planner ms: median / max", "%.1f / %.1f" % (1000 * statistics.median(planner_seconds), 1000 * max(planner_seconds))),
        ("solver ms: median / max", "%.1f / %.1f" % (1000 * statistics.median(solver_seconds), 1000 * max(solver_seconds))),
    ]
    width = max(len(name) for name, _value in rows)
    print("| %s | value |\n|%s|-------|" % ("MILP comparison".ljust(width), "-" * (width + 2)))
    for name, value in rows:
        print("| %s | %s |" % (name.ljust(width), value))
    return 0 if ratios and statistics.mean(ratios) <= 1.1 else 1


if __name__ == "__main__":
    sys.exit(main())
