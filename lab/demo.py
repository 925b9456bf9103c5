"""`make demo`: a small fleet on the lab, shown as hosts, guests and load.

Each step is a function of the Lab, so later demos (the event-driven rebalancing) add
steps instead of rewriting this one. Re-running it reuses the guests it made before.
"""

import sys
import time
from concurrent.futures import ThreadPoolExecutor

from . import Lab, LabError

# name, host, load (% of its one vCPU): about one core in all, the machine has two
DEMO_FLEET = (
    ("web-1", "kvm1", 20),
    ("web-2", "kvm1", 15),
    ("db-1", "kvm2", 25),
    ("cache-1", "kvm2", 10),
    ("batch-1", "kvm3", 30),
)


def _ensure_guest(lab, name, host, load):
    try:
        where, _settings = lab.set_load(name, load)
        return f"{name:<8} already running on {where}, load set to {load}%"
    except LabError:
        started = time.monotonic()
        lab.remove_guest_if_defined(name)  # defined but stopped: start afresh
        lab.create_guest(name, host, load=load)
        return f"{name:<8} created on {host} with load {load}% ({time.monotonic() - started:.1f} s)"


def create_fleet(lab, log=print):
    """Boot the fleet's guests in parallel: each boot is mostly waiting on its kernel."""
    with ThreadPoolExecutor(max_workers=len(DEMO_FLEET)) as pool:
        for line in pool.map(lambda guest: _ensure_guest(lab, *guest), DEMO_FLEET):
            log(line)


def show_fleet(lab, log=print):
    log("")
    log(lab.render_status(seconds=3))


STEPS = (create_fleet, show_fleet)


def main():
    lab = Lab()
    if not lab.running_hosts():
        print("the lab is not running: 'make lab-up' first", file=sys.stderr)
        return 1
    for step in STEPS:
        step(lab)
    return 0


if __name__ == "__main__":
    sys.exit(main())
