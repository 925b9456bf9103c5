"""The policies the trace benchmark compares: the collection's planner, and the published baselines
written after CloudSim's power package (Beloglazov & Buyya 2012).

- ``none``: first fit in row order at the start, never moves.
- ``thr``: static threshold (0.8) for overload, MMT selection (the VMs with the least RAM first
  until the host is below the threshold), power-aware best-fit decreasing (PABFD) placement,
  then consolidation: the least utilised host first, each emptied whole when PABFD places all its
  VMs, until every active host was tried.
- ``kvmops``: ``placement.planner.plan`` with the ``consolidate`` policy and the settings given.

Each is an object with ``decide(view) -> [[(vm, host), ...], ...]`` (waves).
"""

import math

import numpy

from datacenter import HOST_MEMORY_MB


def memory_counts(view, vm):
    """Whether a VM's RAM counts on its host: always when enforced, else only while being placed."""
    return view.memory_model == "enforced" or view.host_of[vm] < 0


def loads(view):
    """(MIPS asked, RAM held) per host, from where the VMs are (or are going)."""
    count = view.hosts.count
    placed = (view.host_of >= 0) & view.alive
    load = numpy.bincount(view.host_of[placed], weights=view.demand[placed], minlength=count)
    if view.memory_model == "enforced":
        ram = numpy.bincount(view.host_of[placed], weights=view.trace.ram[placed], minlength=count)
    else:
        ram = numpy.zeros(count)
    return load, ram


class NoMigration:  # pylint: disable=too-few-public-methods
    """First fit by full MIPS and RAM (what a VM asks for when it is created), then never moves."""

    name = "none"

    def decide(self, view):
        if view.sample:
            return []
        load, ram = numpy.zeros(view.hosts.count), numpy.zeros(view.hosts.count)
        wave = []
        for vm in numpy.nonzero(view.alive & (view.host_of < 0))[0]:
            mips, size = view.trace.mips[vm], view.trace.ram[vm]
            fits = numpy.nonzero((load + mips <= view.hosts.capacity) & (ram + size <= HOST_MEMORY_MB))[0]
            host = int(fits[0])
            load[host] += mips
            ram[host] += size
            wave.append((int(vm), host))
        return [wave]


class ThresholdMmt:
    """THR-MMT-PABFD with the consolidation of under-utilised hosts, as in CloudSim."""

    name = "thr"

    def __init__(self, threshold=0.8):
        self.threshold = threshold

    def _best_host(self, view, demand, ram_need, load, ram, excluded):
        hosts = view.hosts
        after = load + demand
        suitable = ~excluded & (after <= hosts.capacity) & (ram + ram_need <= HOST_MEMORY_MB)
        suitable &= (load == 0) | (after <= self.threshold * hosts.capacity)
        if not suitable.any():
            return -1
        increase = hosts.power(after / hosts.capacity) - hosts.power(load / hosts.capacity)
        increase[~suitable] = math.inf
        return int(numpy.argmin(increase))

    def decide(self, view):
        hosts, trace = view.hosts, view.trace
        load, ram = loads(view)
        moves = []
        if view.sample == 0:
            # at creation a VM asks for its full MIPS and RAM (CloudSim's "being instantiated")
            for vm in numpy.nonzero(view.alive & (view.host_of < 0))[0]:
                host = self._best_host(view, trace.mips[vm], trace.ram[vm], load, ram, numpy.zeros(hosts.count, bool))
                load[host] += trace.mips[vm]
                ram[host] += trace.ram[vm]
                moves.append((int(vm), host))
            return [moves]
        vms_on = {}
        for vm in numpy.nonzero(view.alive & (view.host_of >= 0))[0]:
            vms_on.setdefault(int(view.host_of[vm]), []).append(int(vm))
        ram_counts = view.memory_model == "enforced"
        ram_of = trace.ram if ram_counts else numpy.zeros(trace.count)
        over = [host for host in sorted(vms_on) if load[host] > self.threshold * hosts.capacity[host]]
        excluded = numpy.zeros(hosts.count, bool)
        excluded[over] = True
        leaving = []
        for host in over:
            # MMT: the least RAM first (ties by VM id), never a VM already on its way
            for vm in sorted((vm for vm in vms_on[host] if not view.in_flight[vm]), key=lambda vm: (trace.ram[vm], vm)):
                leaving.append(vm)
                load[host] -= view.demand[vm]
                ram[host] -= ram_of[vm]
                if load[host] <= self.threshold * hosts.capacity[host]:
                    break
        destinations = set()
        for vm in sorted(leaving, key=lambda vm: (-view.demand[vm], vm)):
            host = self._best_host(view, view.demand[vm], ram_of[vm], load, ram, excluded)
            if host < 0:
                source = int(view.host_of[vm])
                load[source] += view.demand[vm]
                ram[source] += ram_of[vm]
                continue
            load[host] += view.demand[vm]
            ram[host] += ram_of[vm]
            moves.append((vm, host))
            destinations.add(host)
        moves += self._consolidate(view, vms_on, load, ram, ram_of, over, destinations)
        return [moves] if moves else []

    def _consolidate(self, view, vms_on, load, ram, ram_of, over, destinations):
        hosts = view.hosts
        switched_off = load <= 0
        placement_excluded = switched_off.copy()
        placement_excluded[over] = True
        tried = set(over) | destinations | {host for host in range(hosts.count) if switched_off[host]}
        moves = []
        moved = {vm for vm, _host in moves}
        while True:
            candidates = [host for host in vms_on if host not in tried and load[host] > 0]
            if not candidates:
                return moves
            host = min(candidates, key=lambda host: (load[host] / hosts.capacity[host], host))
            tried.add(host)
            placement_excluded[host] = True
            vms = [vm for vm in vms_on[host] if vm not in moved]
            if any(view.in_flight[vm] for vm in vms):
                continue
            trial = []
            for vm in sorted(vms, key=lambda vm: (-view.demand[vm], vm)):
                target = self._best_host(view, view.demand[vm], ram_of[vm], load, ram, placement_excluded)
                if target < 0:
                    break
                load[target] += view.demand[vm]
                ram[target] += ram_of[vm]
                trial.append((vm, target))
            if len(trial) < len(vms):
                for vm, target in trial:
                    load[target] -= view.demand[vm]
                    ram[target] -= ram_of[vm]
                continue
            load[host] = 0.0
            ram[host] = 0.0
            moves += trial
            moved.update(vm for vm, _target in trial)
            tried.update(target for _vm, target in trial)


class Planner:
    """The collection's planner, asked every 5 minutes with a snapshot of the data centre."""

    name = "kvmops"

    def __init__(self, plan, policy="consolidate", history=12, **settings):
        self.plan = plan
        self.policy = policy
        self.history = history
        self.settings = dict(dict(cpu_high=90.0, cpu_target=80.0, cpu_low=50.0, cooldown=3600, history_percentile=90,
                                  max_migrations=0, cpu_overcommit=1000.0, memory_high=100.0, max_parallel=10000,
                                  max_per_source=10000, max_per_destination=10000), **settings)
        self.last_result = None

    def snapshot(self, view):
        hosts = [dict(name="h%03d" % host, cpus=view.hosts.capacity[host] / 1000.0, memory_mb=HOST_MEMORY_MB)
                 for host in range(view.hosts.count)]
        history = view.history(self.history) / 1000.0
        guests = []
        for vm in numpy.nonzero(view.alive)[0]:
            host = int(view.host_of[vm])
            guest = dict(name="vm%04d" % vm, host=None if host < 0 else "h%03d" % host,
                         memory_mb=float(view.trace.ram[vm]) if memory_counts(view, vm) else 0.0,
                         cpu_cores=float(view.demand[vm]) / 1000.0, cpu_history=[float(value) for value in history[vm]])
            if math.isfinite(view.last_migrated[vm]):
                guest["last_migrated"] = float(view.last_migrated[vm])
            if view.in_flight[vm]:
                guest["tags"] = dict(migratable=False)
            guests.append(guest)
        return dict(hosts=hosts, guests=guests)

    def decide(self, view):
        result = self.plan(self.snapshot(view), self.policy, now=float(view.time), **self.settings)
        self.last_result = result
        waves = {}
        for move in result["plan"]:
            waves.setdefault(move["wave"], []).append((int(move["guest"][2:]), int(move["destination"][1:])))
        return [waves[wave] for wave in sorted(waves)]


STRATEGIES = dict(none=NoMigration, thr=ThresholdMmt, kvmops=Planner)
