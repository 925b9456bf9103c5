"""Replay days of PlanetLab traces through placement policies and print one row per day and policy.

    python tests/benchmarks/placement/trace_benchmark.py                       # both days, all policies
    python tests/benchmarks/placement/trace_benchmark.py --day ../shared/data/planetlab/20110303.csv \\
        --policy kvmops --set cpu_low=40 --set cooldown=7200 --csv out.csv
    python tests/benchmarks/placement/trace_benchmark.py --memory-model enforced

The model and the baselines: datacenter.py and strategies.py. Goals (issue 6), per day: overload
time no higher than thr's, at most a fifth of thr's migrations, energy at most 5 % above the
published lowest-energy figure (163.5 kWh on 20110303).
"""

import argparse
import csv
import os
import sys
from pathlib import Path

from collection_planner import REPO, plan
from datacenter import Simulation, Trace
from strategies import STRATEGIES, Planner

# the traces sit beside the project (../shared); a clone elsewhere finds them by the variable
# or at the shared place of this machine
TRACE_DIRS = [Path(os.environ["KVMOPS_PLANETLAB_DIR"])] if os.environ.get("KVMOPS_PLANETLAB_DIR") else []
TRACE_DIRS += [REPO.parent / "shared" / "data" / "planetlab", Path("/work/shared/data/planetlab")]
DAYS = next((sorted(folder.glob("*.csv")) for folder in TRACE_DIRS if sorted(folder.glob("*.csv"))), [])
COLUMNS = (("day", "day", "%s"), ("policy", "policy", "%s"), ("memory", "memory_model", "%s"),
           ("energy kWh", "energy_kwh", "%.1f"), ("overload %", "overload_percent", "%.2f"),
           ("PDM %", "pdm_percent", "%.3f"), ("migrations", "migrations", "%d"),
           ("mean active hosts", "mean_active_hosts", "%.1f"), ("planner median ms", "planner_median_ms", "%.1f"),
           ("planner max ms", "planner_max_ms", "%.1f"))


def setting(text):
    key, _sep, value = text.partition("=")
    if not _sep:
        raise argparse.ArgumentTypeError("a setting is KEY=VALUE, got %r" % text)
    try:
        return key, float(value)
    except ValueError:
        return key, value


def strategy(name, settings):
    if name == "kvmops":
        return Planner(plan, **settings)
    return STRATEGIES[name]()


def run(day, name, memory_model="cloudsim", settings=None, limit=None, samples=None):
    trace = Trace(day, limit=limit, samples=samples)
    row = Simulation(trace, strategy(name, dict(settings or {})), memory_model=memory_model).run()
    row.update(day=Path(day).stem, policy=name, memory_model=memory_model)
    return row


def table(rows):
    widths = [max(len(title), *(len(fmt % row[key]) for row in rows)) for title, key, fmt in COLUMNS]
    lines = [" | ".join(title.ljust(width) for (title, _key, _fmt), width in zip(COLUMNS, widths))]
    lines.append("-|-".join("-" * width for width in widths))
    for row in rows:
        lines.append(" | ".join((fmt % row[key]).rjust(width) for (_t, key, fmt), width in zip(COLUMNS, widths)))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--day", action="append", help="a day's CSV (default: every day in ../shared/data/planetlab)")
    parser.add_argument("--policy", action="append", choices=sorted(STRATEGIES), help="default: all")
    parser.add_argument("--memory-model", choices=("cloudsim", "enforced"), default="cloudsim")
    parser.add_argument("--set", action="append", type=setting, default=[], metavar="KEY=VALUE",
                        help="a planner setting for kvmops (history=N samples, and the rebalance_plan options)")
    parser.add_argument("--limit", type=int, help="only the first N VMs")
    parser.add_argument("--samples", type=int, help="only the first N 5-minute steps")
    parser.add_argument("--csv", help="also write the rows here")
    args = parser.parse_args(argv)
    rows = []
    for day in args.day or [str(path) for path in DAYS]:
        for name in args.policy or ["none", "thr", "kvmops"]:
            rows.append(run(day, name, args.memory_model, dict(args.set), args.limit, args.samples))
            print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    print(table(rows))
    if args.csv:
        with open(args.csv, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=[key for _title, key, _fmt in COLUMNS])
            writer.writeheader()
            for row in rows:
                writer.writerow({key: row[key] for _title, key, _fmt in COLUMNS})


if __name__ == "__main__":
    main()
