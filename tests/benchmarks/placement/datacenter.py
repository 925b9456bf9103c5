"""A data centre replaying a day of PlanetLab CPU traces, with the model of the published CloudSim
experiments (Beloglazov & Buyya 2012) so figures compare with theirs.

- 800 hosts: even ones HP ProLiant ML110 G4 (2 x 1860 MIPS), odd ones ML110 G5 (2 x 2660 MIPS),
  4 GB each; power from the SPECpower tables below, linear between 10 % steps; a host with no
  guest (and none arriving) is off and draws nothing.
- one single-vCPU VM per CSV row, in row order; VM i is of type i // ceil(N/4); demand = trace %
  x VM MIPS, linear between the 5-minute samples; a VM ends at its second consecutive 0 % sample.
- a migration lasts RAM / 62.5 MB/s; meanwhile the VM gets 90 % of its demand on the source
  (the lost 10 % is the PDM) and the destination already holds 10 % of the VM's MIPS.
- ``memory_model``: "cloudsim" counts a VM's RAM only when it is first placed, as CloudSim does
  (a running VM's requested RAM comes from its cloudlets' RAM model, null in those runs);
  "enforced" counts it always, as a real hypervisor must.

The policy decides every 300 s; between decisions the state is integrated in ``substep``-second
steps (10 s by default) for energy and overload time; the PDM of each migration is integrated
to the second when it starts.
"""

import csv
import math
import time

import numpy

STEP_SECONDS = 300
HOST_COUNT = 800
HOST_MEMORY_MB = 4096
MIGRATION_MB_PER_SECOND = 62.5
MIGRATION_LOSS = 0.1
VM_TYPES = ((2500, 870), (2000, 1740), (1000, 1740), (500, 613))
HOST_TYPES = (
    ("ML110 G4", 2 * 1860, (86, 89.4, 92.6, 96, 99.5, 102, 106, 108, 112, 114, 117)),
    ("ML110 G5", 2 * 2660, (93.7, 97, 101, 105, 110, 116, 121, 125, 129, 133, 135)),
)
POWER_GRID = numpy.linspace(0.0, 1.0, 11)


class Trace:
    """One day: utilisation (VMs x samples, 0..1), and per VM its MIPS, RAM and last sample."""

    def __init__(self, path, limit=None, samples=None):
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))[1:]
        if limit:
            rows = rows[:limit]
        self.path = str(path)
        self.util = numpy.array([[float(value) for value in row[1:]] for row in rows]) / 100.0
        if samples:
            self.util = self.util[:, :samples]
        count, self.samples = self.util.shape
        per_type = math.ceil(count / len(VM_TYPES))
        types = [VM_TYPES[index // per_type] for index in range(count)]
        self.mips = numpy.array([mips for mips, _ram in types], dtype=float)
        self.ram = numpy.array([ram for _mips, ram in types], dtype=float)
        zero = self.util == 0.0
        self.end = numpy.full(count, self.samples)
        both = zero[:, 1:] & zero[:, :-1]
        for vm in numpy.nonzero(both.any(axis=1))[0]:
            self.end[vm] = int(numpy.argmax(both[vm])) + 1  # the index of the second zero

    @property
    def count(self):
        return len(self.mips)

    def demand(self, sample):
        """MIPS each VM asks for at a sample (0 for VMs that ended)."""
        sample = min(sample, self.samples - 1)
        return self.util[:, sample] * self.mips * (self.end > sample)


class Hosts:
    def __init__(self, count=HOST_COUNT):
        self.count = count
        self.kind = numpy.arange(count) % 2
        self.capacity = numpy.array([HOST_TYPES[kind][1] for kind in self.kind], dtype=float)
        self.memory = numpy.full(count, float(HOST_MEMORY_MB))
        self.tables = [numpy.array(table, dtype=float) for _name, _mips, table in HOST_TYPES]

    def power(self, utilisation):
        """Watts of every host at the given CPU utilisation (0..1; off hosts are the caller's)."""
        watts = numpy.empty(self.count)
        for kind, table in enumerate(self.tables):
            mask = self.kind == kind
            watts[mask] = numpy.interp(numpy.minimum(utilisation[mask], 1.0), POWER_GRID, table)
        return watts

    def power_of(self, host, utilisation):
        return float(numpy.interp(min(utilisation, 1.0), POWER_GRID, self.tables[self.kind[host]]))


class View:  # pylint: disable=too-few-public-methods,too-many-instance-attributes
    """What a policy sees at a decision: the trace up to now, where each VM is, what moves."""

    def __init__(self, simulation, sample):
        self.sample = sample
        self.time = sample * STEP_SECONDS
        self.trace = simulation.trace
        self.hosts = simulation.hosts
        self.memory_model = simulation.memory_model
        self.alive = simulation.trace.end > sample
        self.host_of = simulation.host_of.copy()
        moving = simulation.migration_target >= 0
        self.in_flight = moving.copy()
        self.host_of[moving] = simulation.migration_target[moving]  # a VM on its way counts where it goes
        self.last_migrated = simulation.last_migrated
        self.demand = simulation.trace.demand(sample)

    def history(self, window):
        first = max(0, self.sample - window + 1)
        return self.trace.util[:, first:self.sample + 1] * self.trace.mips[:, None]


class Simulation:  # pylint: disable=too-many-instance-attributes
    """Runs one policy over one day; ``run`` returns the figures."""

    def __init__(self, trace, policy, memory_model="cloudsim", substep=10, hosts=None):
        self.trace = trace
        self.policy = policy
        self.memory_model = memory_model
        self.hosts = hosts or Hosts()
        self.substep = substep
        count = trace.count
        self.host_of = numpy.full(count, -1)
        self.migration_target = numpy.full(count, -1)
        self.migration_start = numpy.zeros(count)
        self.migration_end = numpy.zeros(count)
        self.last_migrated = numpy.full(count, -math.inf)
        self.figures = dict(energy_j=0.0, overload_s=0.0, active_s=0.0, demand=0.0, lost=0.0, migrations=0,
                            unplaced_s=0.0, planner_seconds=[])

    def run(self):
        for sample in range(self.trace.samples):
            view = View(self, sample)
            started = time.perf_counter()
            waves = self.policy.decide(view)
            self.figures["planner_seconds"].append(time.perf_counter() - started)
            self._start(waves, view.time)
            self._integrate(sample)
        return self.report()

    def _start(self, waves, now):
        """``waves``: lists of (vm, destination); placements (VMs without a host) take effect at once,
        migrations of a wave start when the one before has ended."""
        start = now
        for wave in waves:
            end = start
            for vm, destination in wave:
                if self.host_of[vm] < 0:
                    self.host_of[vm] = destination
                    continue
                if self.migration_target[vm] >= 0 or destination == self.host_of[vm]:
                    raise AssertionError("VM %d is moved while moving, or onto its own host" % vm)
                duration = self.trace.ram[vm] / MIGRATION_MB_PER_SECOND
                self.migration_target[vm] = destination
                self.migration_start[vm] = start
                self.migration_end[vm] = start + duration
                self.last_migrated[vm] = start
                self.figures["migrations"] += 1
                self.figures["lost"] += MIGRATION_LOSS * self._asked(vm, start, start + duration)
                end = max(end, start + duration)
            start = end

    def _asked(self, vm, start, end):
        """MIPS-seconds a VM asks for between two times (exact to the second: demand is linear
        between samples, and zero from its end on)."""
        moments = numpy.arange(start, end, 1.0) + 0.5
        seconds = numpy.minimum(numpy.full(len(moments), 1.0), end - (moments - 0.5))
        util = numpy.interp(moments / STEP_SECONDS, numpy.arange(self.trace.samples), self.trace.util[vm])
        util[moments >= self.trace.end[vm] * STEP_SECONDS] = 0.0
        return float(numpy.sum(util * seconds)) * self.trace.mips[vm]

    def _integrate(self, sample):
        trace, hosts, step = self.trace, self.hosts, self.substep
        first, second = trace.util[:, sample], trace.util[:, min(sample + 1, trace.samples - 1)]
        alive = trace.end > sample
        base = sample * STEP_SECONDS
        capacity = hosts.capacity
        for index in range(int(STEP_SECONDS / step)):
            moment = base + (index + 0.5) * step
            share = (moment - base) / STEP_SECONDS
            demand = (first * (1 - share) + second * share) * trace.mips * alive
            target = self.migration_target
            done = (target >= 0) & (self.migration_end <= moment)
            if done.any():
                self.host_of[done] = target[done]
                target[done] = -1
            moving = (target >= 0) & (self.migration_start <= moment) & alive
            placed = (self.host_of >= 0) & alive
            self.figures["unplaced_s"] += float(numpy.sum(alive & ~placed)) * step
            given = numpy.where(moving, demand * (1 - MIGRATION_LOSS), demand)
            load = numpy.bincount(self.host_of[placed], weights=given[placed], minlength=hosts.count)
            residents = numpy.bincount(self.host_of[placed], minlength=hosts.count)
            if moving.any():
                load += numpy.bincount(target[moving], weights=MIGRATION_LOSS * trace.mips[moving], minlength=hosts.count)
                residents += numpy.bincount(target[moving], minlength=hosts.count)
            active = residents > 0
            watts = hosts.power(load / capacity)
            self.figures["energy_j"] += float(numpy.sum(watts[active])) * step
            self.figures["active_s"] += float(numpy.sum(active)) * step
            self.figures["overload_s"] += float(numpy.sum(active & (load > capacity * (1 + 1e-9)))) * step
            self.figures["demand"] += float(numpy.sum(demand)) * step
        # migrations still running at the next decision go on; the policy sees them in flight

    def report(self):
        figures = self.figures
        times = sorted(figures["planner_seconds"])
        day = self.trace.samples * STEP_SECONDS
        return dict(
            energy_kwh=figures["energy_j"] / 3.6e6,
            overload_percent=100.0 * figures["overload_s"] / max(figures["active_s"], 1.0),
            pdm_percent=100.0 * figures["lost"] / max(figures["demand"], 1.0),
            migrations=figures["migrations"],
            mean_active_hosts=figures["active_s"] / day,
            planner_median_ms=1000.0 * times[len(times) // 2],
            planner_max_ms=1000.0 * times[-1],
            unplaced_vm_hours=figures["unplaced_s"] / 3600.0,
        )
