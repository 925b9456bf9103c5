"""`make demo`: a small fleet on the lab, made with the collection's own playbooks, then
rebalanced by the collection's rulebook when the load of one host's guests rises.

The fleet is cloned from the lab's template guest by ``kvmops.virt.lab_template`` and
``kvmops.virt.fleet_from_template`` (the playbooks shipped in the collection), and each
guest is given a CPU load. Then ansible-rulebook runs ``kvmops.virt.rebalance``; the load
of kvm1's guests is raised; the demo prints a timeline - the overload detected, the plan,
the migration, kvm1 recovered - then lowers the load again and shows that nothing moves
back. Each step is a function of the Lab. Re-running it starts the web guests afresh.
"""

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import Lab
from .collection import ansible_environment, collections_path
from .rulebook import PlacementWatch, RulebookRun

# name, host, role, load (% of its one vCPU): about one core in all, the machine has two
DEMO_FLEET = (
    ("web-1", "kvm1", "web", 20),
    ("web-2", "kvm1", "web", 15),
    ("db-1", "kvm2", "db", 25),
    ("cache-1", "kvm2", "cache", 10),
    ("batch-1", "kvm3", "batch", 10),
)
# Cloned from the template by the fleet playbook: their disks live in their host's private
# /var/lib/libvirt/images (docs/lab.md), so they stay where they are. The web guests are
# plain lab guests (kernel and initrd, no disk) so the rebalance can move them live.
CLONED = ("db-1", "cache-1", "batch-1")
# the peak: kvm1's guests at 80 % of their vCPU make kvm1 80 % busy; hot at 60 % for 10 s,
# and a destination may be given up to 50 %: web-1 (40 % of a host) fits on kvm3 only, and
# kvm1 is left at 40 %. Wide margins: lab guests burn less than set when cores are scarce.
PEAK = {"web-1": 80, "web-2": 80}
RULEBOOK_VARIABLES = dict(kvmops_interval=2, kvmops_duration=10, kvmops_cpu_high=60, kvmops_cpu_low=50,
                          kvmops_sample_seconds=2, kvmops_max_migrations=3, kvmops_cooldown=3600)
QUIET_SECONDS = 30


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
    guests = [{"name": name, "host": host, "tags": {"role": role}} for name, host, role, _load in DEMO_FLEET
              if name in CLONED]
    seconds = run_playbook(lab, "fleet_from_template", {"fleet_guests": guests, "fleet_prefix": "demo"})
    log(f"{len(guests)} guests cloned from it (kvmops.virt.fleet_from_template): {seconds:.1f} s")
    # new each time, on their own hosts: a former run moved one and left it in cooldown
    fresh = [(name, host) for name, host, _role, _load in DEMO_FLEET if name not in CLONED]
    for name, host in fresh:
        lab.remove_guest_if_defined(name)
        lab.create_guest(name, host)
    log(f"{', '.join(name for name, _host in fresh)}: lab guests without disks, started on their hosts")


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


class Timeline:  # pylint: disable=too-few-public-methods
    def __init__(self, log):
        self.log, self.started = log, time.time()

    def __call__(self, text, at=None):
        self.log(f"[{(at or time.time()) - self.started:6.1f} s] {text}")


def rebalance_on_peak_load(lab, log=print):
    """The rulebook at work: detect, plan, migrate, settle; and then nothing moves back."""
    names = [name for name, _host, _role, _load in DEMO_FLEET]
    workdir = lab.layout.root / "demo"
    workdir.mkdir(parents=True, exist_ok=True)
    log("")
    run = RulebookRun(ansible_environment(os.environ, [collections_path()]), lab, "kvmops.virt.rebalance",
                      RULEBOOK_VARIABLES, workdir)
    step = Timeline(log)
    try:
        run.wait_for(r"kvmops\.virt\.host_load: watching", timeout=90)
        step("ansible-rulebook runs kvmops.virt.rebalance: hot at 60 % for 10 s; destinations stay below 50 %")
        with PlacementWatch(lab, names) as watch:
            time.sleep(2 * RULEBOOK_VARIABLES["kvmops_interval"])
            for name, load in PEAK.items():
                lab.set_load(name, load)
            step("the load of web-1 and web-2 on kvm1 rises to 80 %")
            event = run.wait_for_event("host_overloaded", "kvm1", timeout=90)
            busiest = ", ".join(f"{guest['name']} {guest['cpu_cores']:.2f} cores" for guest in event["top_guests"])
            step(f"host_overloaded: kvm1 at {event['cpu_percent']:.0f} % for {event['window']['seconds']:.0f} s "
                 f"({busiest})", event["at"])
            step("plan: " + run.wait_for(r'"msg": "(wave 1: [^"]*)"', timeout=120).group(1))
            deadline = time.monotonic() + 120
            while not watch.arrivals:
                if time.monotonic() > deadline or "migration(s) failed" in run.text():
                    raise SystemExit(f"no migration started; ansible-rulebook's output: {run.log_path}")
                time.sleep(0.2)
            when, guest, host = watch.arrivals[0]
            step(f"migration of {guest} to {host} starts", when)
            step(run.wait_for(r'"msg": "(kvm1: CPU [^"]*)"', timeout=120).group(1))
            recovered = run.wait_for_event("host_recovered", "kvm1", timeout=60)
            step(f"host_recovered: kvm1 at {recovered['cpu_percent']:.0f} %", recovered["at"])
            for name, _host, _role, load in DEMO_FLEET:
                if name in PEAK:
                    lab.set_load(name, load)
            step(f"the load drops back; watching for {QUIET_SECONDS} s")
            time.sleep(QUIET_SECONDS)
            moved_again = len(watch.arrivals) - 1
            step("nothing moved back or on" if not moved_again else f"{moved_again} more migration(s) after the rebalance")
    finally:
        run.stop()
    log(f"(ansible-rulebook's output: {run.log_path})")


STEPS = (create_fleet, set_loads, show_fleet, rebalance_on_peak_load, show_fleet)


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
