"""How long the planner takes on a big fleet, per policy (goal, issue 6: 1,000 hosts x 20,000
guests in under 2 s on this machine).

    python tests/benchmarks/placement/planner_speed.py
    python tests/benchmarks/placement/planner_speed.py --hosts 2000 --guests 40000 --repeat 5

The fleet is random but fixed by ``--seed``: 32-core, 256 GiB hosts, the first tenth of them
busy (hot spots), one guest in seven in one of 50 anti-affinity groups, one in ten with an hour
of CPU history. Times are wall-clock for ``plan()`` (parsing and checking the snapshot
included), the best and the median of ``--repeat`` runs.
"""

import argparse
import random
import statistics
import sys
import time

from collection_planner import plan


def fleet(hosts, guests, seed):
    rng = random.Random(seed)
    host_list = [dict(name="h%04d" % number, cpus=32, memory_mb=262144) for number in range(hosts)]
    guest_list = []
    for number in range(guests):
        host = rng.randrange(hosts)
        busy = host < hosts // 10
        guest = dict(name="g%05d" % number, host=host_list[host]["name"], vcpus=rng.choice([1, 2, 4]),
                     memory_mb=rng.choice([1024, 2048, 4096, 8192]),
                     cpu_cores=rng.uniform(0.5, 3.0) if busy else rng.uniform(0.0, 1.2), tags={})
        if number % 7 == 0:
            guest["tags"]["anti_affinity_group"] = "aa%d" % (number % 50)
        if number % 10 == 0:
            guest["cpu_history"] = [rng.uniform(0.0, 2.0) for _sample in range(12)]
        guest_list.append(guest)
    return dict(hosts=host_list, guests=guest_list)


CASES = (
    ("hotspot", dict(max_migrations=0)),
    ("balance", dict(max_migrations=200)),
    ("consolidate", dict(max_migrations=0)),
    ("evacuate (10 hosts)", dict(max_migrations=0)),
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--guests", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    snapshot = fleet(args.hosts, args.guests, args.seed)
    print("| policy (%d hosts x %d guests) | best s | median s | migrations | waves | hot before -> after |"
          % (args.hosts, args.guests))
    print("|---|---|---|---|---|---|")
    slowest = 0.0
    for label, settings in CASES:
        policy = label.split()[0]
        if policy == "evacuate":
            settings = dict(settings, drain=[host["name"] for host in snapshot["hosts"][:10]])
        times = []
        for _run in range(args.repeat):
            started = time.perf_counter()
            result = plan(snapshot, policy, now=0, **settings)
            times.append(time.perf_counter() - started)
        summary = result["summary"]
        slowest = max(slowest, min(times))
        print("| %s | %.2f | %.2f | %d | %d | %d -> %d |" % (
            label, min(times), statistics.median(times), summary["migrations"], summary["waves"],
            summary["hot_hosts_before"], summary["hot_hosts_after"]))
    return 0 if slowest < 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
