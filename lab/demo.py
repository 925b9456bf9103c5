"""`make demo`: a small fleet on the lab, made with the collection's own playbooks, shown as
hosts, guests and load.

The fleet is cloned from the lab's template guest by ``kvmops.virt.lab_template`` and
``kvmops.virt.fleet_from_template`` (the playbooks shipped in the collection), then each
guest is given a CPU load. Each step is a function of the Lab, so later demos (the
event-driven rebalancing) add steps instead of rewriting this one. Re-running it changes
nothing but the loads.
"""

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import Lab
from .collection import collections_path

# name, host, role, load (% of its one vCPU): about one core in all, the machine has two
DEMO_FLEET = (
    ("web-1", "kvm1", "web", 20),
    ("web-2", "kvm1", "web", 15),
    ("db-1", "kvm2", "db", 25),
    ("cache-1", "kvm2", "cache", 10),
    ("batch-1", "kvm3", "batch", 30),
)


def run_playbook(lab, name, extra_vars=None):
    """Run one of the collection's playbooks against the lab; returns seconds taken."""
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(lab.layout.inventory_path),
               f"kvmops.virt.{name}"]
    if extra_vars:
        command += ["-e", json.dumps(extra_vars)]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections_path()), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal", ANSIBLE_NOCOLOR="1")
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"ansible-playbook kvmops.virt.{name} failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    return time.monotonic() - started


def create_fleet(lab, log=print):
    seconds = run_playbook(lab, "lab_template")
    log(f"template guest on every host (kvmops.virt.lab_template): {seconds:.1f} s")
    guests = [{"name": name, "host": host, "tags": {"role": role}} for name, host, role, _load in DEMO_FLEET]
    seconds = run_playbook(lab, "fleet_from_template", {"fleet_guests": guests, "fleet_prefix": "demo"})
    log(f"{len(guests)} guests cloned from it (kvmops.virt.fleet_from_template): {seconds:.1f} s")


def set_loads(lab, log=print):
    """Give every guest its load; each waits until its guest's console answers."""
    def apply(guest):
        name, _host, _role, load = guest
        where, _settings = lab.set_load(name, load)
        return f"{name:<8} on {where}: load {load}%"
    with ThreadPoolExecutor(max_workers=len(DEMO_FLEET)) as pool:
        for line in pool.map(apply, DEMO_FLEET):
            log(line)


def show_fleet(lab, log=print):
    log("")
    log(lab.render_status(seconds=3))


STEPS = (create_fleet, set_loads, show_fleet)


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
