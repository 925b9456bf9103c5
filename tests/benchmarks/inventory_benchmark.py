#!/usr/bin/env python
"""Benchmark of dynamic inventories of a KVM fleet: kvmops.virt.libvirt against the rest.

    .venv/bin/python tests/benchmarks/inventory_benchmark.py [--scenarios 10x100,50x500] [--repeat 3]
                                                             [--markdown PATH]

For each scenario HxG (H hypervisors with G guests each, real libvirtd daemons serving
libvirt's test driver on 127.0.2.N) it measures ``ansible-inventory -i SOURCE --list``
(output to /dev/null) for every contender, side by side, and prints the median wall time
and peak RSS. ``HxG+wan`` puts a delay proxy (about 2.6 ms round trip) between the
inventories and the daemons; ``HxG+hung`` makes the last of the H hypervisors one that
accepts connections and never answers. See tests/benchmarks/README.md.

Needs root (the daemons run in private mount namespaces, as the lab's do) and leaves no
process behind, also on Ctrl-C.
"""

import argparse
import fcntl
import json
import os
import platform
import shutil
import signal
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import paths  # first: puts the lab package and the collection on sys.path  # pylint: disable=wrong-import-order

import libvirt
from ansible.release import __version__ as ansible_core_version

import contenders
import report
from delay_proxy import DelayProxy
from fleet import HUNG_ADDRESS, PORT, Fleet, guest_spec, test_uri
from measurement import run_measured

LOCK_PATH = "/tmp/kvmops-bench.lock"
# held by the integration tests while they run QEMU guests on the lab: they would skew the timings
LAB_LOCK_PATH = "/tmp/kvmops-lab.lock"
PROXY_PID_FILE = paths.BENCH_ROOT / "delay_proxy.pid"
DEFAULT_SCENARIOS = "10x100,10x500,50x100,50x500,10x500+wan,10x100+hung"
KINDS = ("loopback", "wan", "hung")
# contenders that talk to the hypervisors; the others read files and gain nothing from these scenarios
NETWORK_CONTENDERS = ("kvmops", "community")


class BenchmarkError(Exception):
    pass


@dataclass(frozen=True)
class Scenario:
    hypervisors: int
    guests: int
    kind: str = "loopback"

    @classmethod
    def parse(cls, text):
        size, _plus, kind = text.strip().partition("+")
        kind = kind or "loopback"
        hypervisors, separator, guests = size.partition("x")
        if not separator or not hypervisors.isdigit() or not guests.isdigit() or kind not in KINDS:
            raise argparse.ArgumentTypeError(
                f"scenario {text!r}: write HxG (hypervisors x guests each), optionally +wan or +hung, e.g. 10x500+wan")
        scenario = cls(int(hypervisors), int(guests), kind)
        if not 1 <= scenario.real_hypervisors <= 249 or scenario.guests < 1:
            raise argparse.ArgumentTypeError(f"scenario {text!r}: 1..249 reachable hypervisors and at least 1 guest")
        return scenario

    @property
    def name(self):
        return f"{self.hypervisors}x{self.guests}" + ("" if self.kind == "loopback" else "+" + self.kind)

    @property
    def loopback_name(self):
        return f"{self.hypervisors}x{self.guests}"

    @property
    def real_hypervisors(self):
        """The ones with a daemon: in a +hung scenario the last one is the hung listener."""
        return self.hypervisors - 1 if self.kind == "hung" else self.hypervisors

    def applies_to(self, key):
        return self.kind == "loopback" or key in NETWORK_CONTENDERS


def _scenarios(text):
    scenarios = [Scenario.parse(item) for item in text.split(",") if item.strip()]
    if not scenarios:
        raise argparse.ArgumentTypeError("no scenarios given")
    return scenarios


def _contenders(text):
    keys = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [key for key in keys if key not in contenders.CONTENDER_KEYS]
    if unknown or not keys:
        raise argparse.ArgumentTypeError(f"contenders: choose from {', '.join(contenders.CONTENDER_KEYS)}; "
                                         f"unknown: {', '.join(unknown) or '(none given)'}")
    return [key for key in contenders.CONTENDER_KEYS if key in keys]


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--scenarios", type=_scenarios, default=_scenarios(DEFAULT_SCENARIOS),
                        help=f"comma-separated HxG[+wan|+hung] (default {DEFAULT_SCENARIOS})")
    parser.add_argument("--contenders", type=_contenders, default=list(contenders.CONTENDER_KEYS),
                        help=f"comma-separated subset of {','.join(contenders.CONTENDER_KEYS)} (default all)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per contender and scenario (default 3)")
    parser.add_argument("--markdown", type=Path, help="also write the results as markdown to this file")
    parser.add_argument("--action", choices=("list", "graph"), default="list",
                        help="what the timed runs ask ansible-inventory for: --list (default; every variable, as JSON) "
                             "or --graph (names only: loading the inventory without the cost of its JSON output)")
    parser.add_argument("--connect-timeout", type=float, default=10.0,
                        help="kvmops.virt.libvirt's connect_timeout (default 10)")
    parser.add_argument("--max-workers", type=int, default=16, help="kvmops.virt.libvirt's max_workers (default 16)")
    parser.add_argument("--wan-rtt-ms", type=float, default=2.6,
                        help="round trip the delay proxy adds in +wan scenarios (default 2.6)")
    parser.add_argument("--hang-timeout", type=float, default=120.0,
                        help="seconds after which a run in a +hung scenario is killed (default 120)")
    parser.add_argument("--run-timeout", type=float, default=900.0,
                        help="seconds after which any other run is killed (default 900)")
    parser.add_argument("--ignore-lab-lock", action="store_true",
                        help=f"do not wait for {LAB_LOCK_PATH} (integration tests running meanwhile skew the timings)")
    parser.add_argument("--setup-only", action="store_true",
                        help="only bring the largest fleet of the scenarios up, report how long it took, stop")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    # the fleet only grows: fewer guests first, then more
    args.scenarios = sorted(dict.fromkeys(args.scenarios),
                            key=lambda item: (item.guests, item.hypervisors, KINDS.index(item.kind)))
    return args


def log(message=""):
    print(message, flush=True)


class Benchmark:
    """One run of the harness: the fleet, the proxy, the contenders and their results."""

    def __init__(self, args, stack):
        self.args = args
        self.stack = stack
        self.work = paths.BENCH_ROOT / "run"
        self.fleet = Fleet(paths.BENCH_ROOT / "fleet", log=log)
        self.proxy = None
        self.rtt = None  # (per-direction delay ms, direct ms, proxied ms)
        self.results = []
        self.setup = []  # (scenario, seconds)
        self.community_dir = None
        self.env = None
        self.notes = []
        self.digests = {}  # (scenario name, contender key) -> listing_digest of its validated output
        self.startup = None  # ansible-inventory on a one-host inventory: (seconds, MiB)

    # ------------------------------------------------------------ preparation

    def prepare(self):
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        if "community" in self.args.contenders:
            self.community_dir = contenders.ensure_community_libvirt(paths.BENCH_ROOT, log=log)
        self.env = contenders.ansible_environment(self.work, self.community_dir)
        self.stack.callback(self._stop_fleet)
        self.fleet.start()
        if DelayProxy.end_stale(PROXY_PID_FILE):
            log("ended the delay proxy an earlier run left behind")

    def _stop_fleet(self):
        started = time.monotonic()
        count = len(self.fleet.daemons)
        self.fleet.stop()
        if count:
            log(f"stopped {count} libvirtd daemons in {time.monotonic() - started:.2f} s; none of their processes is left")

    def _ensure_proxy(self):
        """The delay proxy (forwarding every +wan hypervisor) and the hung listener, calibrated once."""
        if self.proxy is not None:
            return
        wan = [scenario for scenario in self.args.scenarios if scenario.kind == "wan"]
        hung = any(scenario.kind == "hung" for scenario in self.args.scenarios)
        specs = self.fleet.specs(max((scenario.hypervisors for scenario in wan), default=0))
        forwards = [(f"{spec.proxy_address}:{PORT}", f"{spec.address}:{PORT}") for spec in specs]
        self.proxy = DelayProxy(self.work / "delay_proxy.log", PROXY_PID_FILE, forwards,
                                [f"{HUNG_ADDRESS}:{PORT}"] if hung else [])
        self.stack.callback(self.proxy.stop)
        if specs:
            # the first +wan scenario comes after the fleet has hv01 up: calibrate on it
            self.rtt = self.proxy.start_calibrated(self.args.wan_rtt_ms, specs[0].uri, specs[0].proxied_uri, log=log)
        else:
            self.proxy.start(0.0)

    # ------------------------------------------------------------ one scenario

    def run(self):
        for scenario in self.args.scenarios:
            self.run_scenario(scenario)

    def run_scenario(self, scenario):
        log(f"\n== {scenario.name}: {scenario.real_hypervisors} hypervisors x {scenario.guests} guests"
            + {"wan": ", through the delay proxy", "hung": f", plus one hung hypervisor ({HUNG_ADDRESS})"}.get(
                scenario.kind, ""))
        self._check_machine_quiet(scenario)
        self.setup.append((scenario.name, self.fleet.prepare(scenario.real_hypervisors, scenario.guests)))
        if scenario.kind != "loopback":
            self._ensure_proxy()
        directory = self.work / scenario.name
        directory.mkdir()
        results, sources = self._contenders_of(scenario, directory)
        expected = {guest_spec(spec, index).name for spec in self.fleet.specs(scenario.real_hypervisors)
                    for index in range(1, scenario.guests + 1)}
        for key, source in sources.items():
            self._validate(results[key], scenario, source, directory, expected)
        self._compare_with_plugin(scenario, results)
        self._timed_runs(scenario, directory, results, sources)
        self.results.extend(results.values())
        log("\n" + report.text_table(list(results.values())))

    def _check_machine_quiet(self, scenario):
        busy = machine_busy()
        if busy > 0.15:
            log(f"  WARNING: {busy:.0%} of the CPUs busy while the benchmark idles: other work skews the timings")
            self.notes.append(f"{scenario.name}: {busy:.0%} of the CPUs busy with other work at its start")

    def _contenders_of(self, scenario, directory):
        """The Result of every contender that runs in this scenario, and the -i sources of those that can."""
        hypervisors = self._hypervisors(scenario)
        results, sources = {}, {}
        for key in self.args.contenders:
            if not scenario.applies_to(key):
                continue
            # through the proxy the floor is the loopback one of the same size; a hung fleet has none
            result = report.Result(scenario.name, key, contenders.contender(key).label,
                                   floor_key=scenario.loopback_name if scenario.kind == "wan" else None)
            results[key] = result
            try:
                sources[key] = self._sources(key, scenario, directory, hypervisors)
            except BenchmarkError as error:
                result.status, result.note = "skipped", str(error)
                log(f"  {result.label}: skipped: {error}")
        return results, sources

    def _timed_runs(self, scenario, directory, results, sources):
        """--repeat rounds, each contender once per round, so drift on the machine hits them all alike."""
        timeout = self.args.hang_timeout if scenario.kind == "hung" else self.args.run_timeout
        proxy_load = {}  # contender -> proxy CPU seconds per wall second, per timed run
        for repeat in range(1, self.args.repeat + 1):
            for key, source in sources.items():
                result = results[key]
                if result.status != "ok":
                    continue
                proxy_before = self.proxy.cpu_seconds() if scenario.kind == "wan" else None
                with open(directory / f"{key}.timed.stderr", "wb") as errors:
                    run = run_measured(contenders.ansible_inventory_command(source, self.args.action), self.env,
                                       self.work, timeout, stderr=errors)
                if proxy_before is not None:
                    proxy_load.setdefault(key, []).append((self.proxy.cpu_seconds() - proxy_before) / run.seconds)
                if run.timed_out:
                    result.status, result.note = "hung", f"hung (killed after {timeout:.0f} s)"
                elif run.returncode != 0:
                    result.status, result.note = "failed", f"exit {run.returncode} in timed run {repeat}"
                else:
                    result.runs.append(run)
                log(f"  {result.label:34} run {repeat}/{self.args.repeat}: {run.seconds:7.2f} s "
                    f"{run.max_rss_mib:7.0f} MiB" + (f"  {result.note}" if result.status != "ok" else ""))
        for key, loads in proxy_load.items():
            # a proxy near 100 % of a CPU would be the bottleneck, not the round trip it emulates
            results[key].note = "; ".join(filter(None, [results[key].note, f"delay proxy busy {max(loads):.0%} of a CPU"]))

    def _compare_with_plugin(self, scenario, results):
        """The floor and the cache must list exactly what the plugin lists, or they measure something else."""
        plugin = self.digests.get((scenario.name, "kvmops"))
        for key in ("static", "cached"):
            digest = self.digests.get((scenario.name, key))
            if plugin is None or digest is None:
                continue
            same = digest == plugin
            results[key].note = "; ".join(filter(None, [results[key].note, "same --list output as the plugin" if same
                                                        else "DIFFERENT --list output from the plugin"]))
            log(f"  {results[key].label}: {'same' if same else 'DIFFERENT'} --list output as kvmops.virt.libvirt")

    def measure_startup(self):
        """ansible-inventory itself, on a one-host inventory: what every contender pays before its work."""
        runs = [run_measured(contenders.ansible_inventory_command(["localhost,"]), self.env, self.work,
                             self.args.run_timeout) for _run in range(3)]
        runs.sort(key=lambda run: run.seconds)
        self.startup = (runs[1].seconds, runs[1].max_rss_mib)
        log(f"ansible-inventory start-up (one-host inventory): {self.startup[0]:.2f} s, {self.startup[1]:.0f} MiB")

    def _hypervisors(self, scenario):
        """(name, uri) of every hypervisor the inventories are given in this scenario."""
        specs = self.fleet.specs(scenario.real_hypervisors)
        hypervisors = [(spec.name, spec.proxied_uri if scenario.kind == "wan" else spec.uri) for spec in specs]
        if scenario.kind == "hung":
            hypervisors.append((f"hv{scenario.hypervisors:02d}", test_uri(HUNG_ADDRESS)))
        return hypervisors

    def _sources(self, key, scenario, directory, hypervisors):
        """The -i arguments of a contender in this scenario (writing what they need)."""
        if key == "community":
            return contenders.write_community_configs(directory / "community", hypervisors)
        if key == "static":
            return [self._static_floor(scenario, directory, hypervisors)]
        if key == "kvmops":
            return [contenders.write_kvmops_config(directory / "fleet.kvmops.yml", hypervisors,
                                                   self.args.connect_timeout, self.args.max_workers)]
        return [contenders.write_kvmops_config(directory / "cached.kvmops.yml", hypervisors, self.args.connect_timeout,
                                               self.args.max_workers, cache_dir=directory / "cache")]

    def _static_floor(self, scenario, directory, hypervisors):
        path = directory / "floor.json"
        config = contenders.write_kvmops_config(directory / "export.kvmops.yml", hypervisors,
                                                self.args.connect_timeout, self.args.max_workers)
        exported = directory / "export.json"
        with open(exported, "wb") as output, open(directory / "export.stderr", "wb") as errors:
            run = run_measured(contenders.ansible_inventory_command([config], export=True), self.env, self.work,
                               self.args.run_timeout, stdout=output, stderr=errors)
        if run.returncode != 0 or run.timed_out:
            raise BenchmarkError(f"exporting kvmops.virt.libvirt's inventory failed; see {directory / 'export.stderr'}")
        return contenders.write_static(path, contenders.static_from_export(json.loads(exported.read_text())))

    def _validate(self, result, scenario, source, directory, expected):
        """One untimed run with the output kept: it must list every guest. It also warms caches."""
        timeout = self.args.hang_timeout if scenario.kind == "hung" else self.args.run_timeout
        listing_path = directory / f"{result.contender}.list.json"
        stderr_path = directory / f"{result.contender}.stderr"
        with open(listing_path, "wb") as output, open(stderr_path, "wb") as errors:
            run = run_measured(contenders.ansible_inventory_command(source), self.env, self.work, timeout,
                               stdout=output, stderr=errors)
        if run.timed_out:
            result.status, result.note = "hung", f"hung (killed after {timeout:.0f} s)"
            log(f"  {result.label}: {result.note}")
            return
        if run.returncode != 0:
            result.status = "failed"
            result.note = f"exit {run.returncode}: {_last_line(stderr_path)}"
            log(f"  {result.label}: FAILED, {result.note} (see {stderr_path})")
            return
        listing = json.loads(listing_path.read_text())
        listed = contenders.listed_hosts(listing)
        result.hosts = len(listed)
        result.groups = len([name for name in listing if name != "_meta"])
        missing = expected - listed
        if missing:
            result.status = "failed"
            result.note = f"{len(missing)} of {len(expected)} guests missing, e.g. {sorted(missing)[0]}"
            log(f"  {result.label}: FAILED, {result.note}")
            return
        notes = []
        if scenario.kind == "hung" and result.contender == "kvmops":
            hung_name = f"hv{scenario.hypervisors:02d}"
            reachable = listing.get("_meta", {}).get("hostvars", {}).get(hung_name, {}).get("kvm_reachable")
            notes.append(f"{hung_name} kvm_reachable={reachable}")
        result.note = "; ".join(notes)
        if result.contender in ("kvmops", "static", "cached"):
            self.digests[(scenario.name, result.contender)] = contenders.listing_digest(listing)
        log(f"  {result.label}: lists all {len(expected)} guests ({result.hosts} hosts, {result.groups} groups), "
            f"{run.seconds:.2f} s untimed")

    # ------------------------------------------------------------ output

    def header(self):
        lines = [
            f"machine: {platform.node()}, {os.cpu_count()} CPUs ({_cpu_model()}), "
            f"load average {os.getloadavg()[0]:.2f} at start",
            f"python {platform.python_version()}, ansible-core {ansible_core_version}, "
            f"libvirt {_libvirt_version()}, libvirt-python {_libvirt_python_version()}",
            f"kvmops.virt.libvirt: default options, max_workers {self.args.max_workers}, "
            f"connect_timeout {self.args.connect_timeout:g} s",
        ]
        if self.community_dir:
            lines.append(f"community.libvirt {contenders.community_libvirt_version(self.community_dir)} "
                         f"(from {contenders.ANSIBLE_PACKAGE}), one source per hypervisor")
        lines.append(f"timed: `ansible-inventory -i SOURCE --{self.args.action} > /dev/null`, {self.args.repeat} runs per "
                     "contender (after one untimed --list run that checks the output)")
        if self.startup:
            lines.append(f"ansible-inventory start-up alone (one-host inventory): {self.startup[0]:.2f} s, "
                         f"{self.startup[1]:.0f} MiB")
        return lines

    def setup_lines(self):
        lines = [f"{what}: {seconds:.2f} s" for what, seconds in self.fleet.timings]
        total = sum(seconds for _scenario, seconds in self.setup)
        lines.append(f"fleet set-up in total: {total:.2f} s")
        if self.rtt:
            delay, direct, proxied = self.rtt
            lines.append(f"delay proxy: {delay:.3f} ms per direction; getVersion round trip {direct:.3f} ms direct, "
                         f"{proxied:.3f} ms through the proxy: adds {proxied - direct:.2f} ms")
        return lines

    def summary(self):
        out = ["", "== results"] + self.header() + self.notes + [""] + [report.text_table(self.results)] + [""]
        out += self.setup_lines()
        log("\n".join(out))
        if self.args.markdown:
            self.write_markdown(self.args.markdown)
            log(f"markdown written to {self.args.markdown}")

    def write_markdown(self, path):
        text = ["# Inventory benchmark", ""]
        text += [f"- {line}" for line in self.header() + self.notes]
        text += ["", report.markdown_table(self.results), "", "Set-up:", ""]
        text += [f"- {line}" for line in self.setup_lines()]
        text += ["", f"Median of the timed runs of `ansible-inventory -i SOURCE --{self.args.action} > /dev/null`; "
                 "peak RSS is the "
                 "child's `ru_maxrss` (what `/usr/bin/time -v` calls Maximum resident set size). "
                 "x floor: wall time over the static file's in the same HxG; x community: over community.libvirt's "
                 "in the same scenario. See tests/benchmarks/README.md.", ""]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(text))

    def setup_only(self):
        largest = max(self.args.scenarios, key=lambda item: (item.real_hypervisors * item.guests))
        started = time.monotonic()
        self.fleet.prepare(largest.real_hypervisors, largest.guests)
        log(f"fleet of {largest.real_hypervisors} x {largest.guests} up in {time.monotonic() - started:.2f} s")
        log("\n".join(self.setup_lines()[:-1]))


def machine_busy(seconds=1.0):
    """Fraction of all CPUs busy over ``seconds`` (from /proc/stat), measured while the benchmark idles."""
    def sample():
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields[:8]) - idle, sum(fields[:8])

    busy_before, total_before = sample()
    time.sleep(seconds)
    busy_after, total_after = sample()
    return (busy_after - busy_before) / max(1, total_after - total_before)


def _last_line(path):
    lines = [line for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:200] if lines else "(no output)"


def _cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _libvirt_version():
    version = libvirt.getVersion()
    return f"{version // 1000000}.{version // 1000 % 1000}.{version % 1000}"


def _libvirt_python_version():
    from importlib.metadata import version  # pylint: disable=import-outside-toplevel
    return version("libvirt-python")


def _raise_system_exit(signum, _frame):
    raise SystemExit(128 + signum)


def _take_lock(path, holder):
    lock = open(path, "w", encoding="utf-8")  # pylint: disable=consider-using-with
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log(f"{holder} (it holds {path}); waiting for it to finish")
        fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def main(argv=None):
    args = parse_arguments(argv)
    if os.geteuid() != 0:
        log("the inventory benchmark needs root: it starts libvirtd daemons in private mount namespaces")
        return 2
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_system_exit)
    # Ctrl-C must clean up even when started from a shell that ignores SIGINT for background jobs
    signal.signal(signal.SIGINT, signal.default_int_handler)
    locks = [_take_lock(LOCK_PATH, "another inventory benchmark runs")]
    if not args.ignore_lab_lock:
        locks.append(_take_lock(LAB_LOCK_PATH, "integration tests are using the lab"))
    stack = ExitStack()
    benchmark = Benchmark(args, stack)
    try:
        benchmark.prepare()
        for line in benchmark.header():
            log(line)
        if args.setup_only:
            benchmark.setup_only()
        else:
            benchmark.measure_startup()
            benchmark.run()
    except KeyboardInterrupt:
        log("\ninterrupted: stopping everything the benchmark started")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        try:
            stack.close()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for lock in locks:
                lock.close()
    if args.setup_only:
        return 0
    benchmark.summary()
    failed = [result for result in benchmark.results if result.status == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
