"""LoadWatch: which snapshots of a fleet turn into which events (duration window, hysteresis,
reachability, maintenance, repeats). The event source that feeds it real snapshots is
tested on the lab (tests/integration/test_rulebook_on_lab.py)."""

import pytest

from ansible_collections.kvmops.virt.plugins.module_utils.load_watch import LoadWatch, WatchSettingsError

GIB = 1024 ** 3
SECOND = 10 ** 9


class Fleet:
    """Two hosts of 2 cores and 16 GiB; guests burn ``cores`` between readings."""

    def __init__(self):
        self.counters = {}
        self.now = 1000.0
        self.cores = {"kvm1": {"a": 0.2, "b": 0.2}, "kvm2": {"c": 0.1}}
        self.down = set()
        self.maintenance = set()

    def step(self, seconds=5.0):
        self.now += seconds
        for guests in self.cores.values():
            for name, cores in guests.items():
                self.counters[name] = self.counters.get(name, 0) + int(cores * seconds * SECOND)
        return self.snapshot()

    def snapshot(self):
        fleet = []
        for host, guests in self.cores.items():
            if host in self.down:
                fleet.append(dict(name=host, uri="qemu:///" + host, reachable=False, error="connection refused",
                                  host=None, guests=[]))
                continue
            fleet.append(dict(name=host, uri="qemu:///" + host, reachable=True, error=None,
                              host=dict(logical_cpus=2, memory_total=16 * GIB,
                                        maintenance={"reason": "x"} if host in self.maintenance else None),
                              guests=[dict(name=name, uuid="uuid-" + name, state="running", vcpus=1, memory=2 * GIB,
                                           cpu_time=self.counters.get(name, 0)) for name in sorted(guests)]))
        return fleet


def run(watch, fleet, steps, seconds=5.0):
    events = []
    for _step in range(steps):
        events += watch.observe(fleet.step(seconds), fleet.now)
    return events


def kinds(events):
    return [(event["type"], event["host"]) for event in events]


@pytest.fixture
def fleet():
    return Fleet()


def test_a_host_hot_for_the_whole_duration_fires_once_with_its_figures(fleet):
    watch = LoadWatch(cpu_high=80, cpu_low=60, duration=20)
    assert run(watch, fleet, 3) == []  # 20 % busy
    fleet.cores["kvm1"] = {"a": 0.9, "b": 0.8}  # 85 %
    hot_from = fleet.now + 5  # the first hot reading: the window counts from there
    events = run(watch, fleet, 4)
    assert events == []  # 15 s of the 20 s window
    events = run(watch, fleet, 1)
    assert kinds(events) == [("host_overloaded", "kvm1")]
    [event] = events
    assert event["cpu_percent"] == 85.0 and event["memory_percent"] == 25.0 and event["cpus"] == 2
    assert event["window"] == dict(since=hot_from, seconds=20.0) and event["uri"] == "qemu:///kvm1"
    assert [guest["name"] for guest in event["top_guests"]] == ["a", "b"] and event["top_guests"][0]["cpu_cores"] == 0.9
    assert event["thresholds"]["duration"] == 20 and event["repeat"] == 0
    assert run(watch, fleet, 10) == []  # still hot: no more events


def test_a_spike_shorter_than_the_duration_fires_nothing(fleet):
    watch = LoadWatch(cpu_high=80, duration=20)
    run(watch, fleet, 2)
    fleet.cores["kvm1"] = {"a": 1.0, "b": 1.0}
    assert run(watch, fleet, 3) == []  # 15 s hot
    fleet.cores["kvm1"] = {"a": 0.2, "b": 0.2}
    assert run(watch, fleet, 1) == []  # one cool reading ends the window
    fleet.cores["kvm1"] = {"a": 1.0, "b": 1.0}
    assert run(watch, fleet, 4) == []  # the window starts again
    assert kinds(run(watch, fleet, 1)) == [("host_overloaded", "kvm1")]


def test_recovery_needs_the_low_threshold(fleet):
    watch = LoadWatch(cpu_high=80, cpu_low=50, duration=5)
    run(watch, fleet, 1)
    fleet.cores["kvm1"] = {"a": 0.9, "b": 0.9}
    assert kinds(run(watch, fleet, 2)) == [("host_overloaded", "kvm1")]
    fleet.cores["kvm1"] = {"a": 0.6, "b": 0.6}  # 60 %: below high, above low
    assert run(watch, fleet, 5) == []
    fleet.cores["kvm1"] = {"a": 0.4, "b": 0.4}  # 40 %
    assert run(watch, fleet, 1) == []  # cool for 0 s of the 5 s recovery window
    fleet.cores["kvm1"] = {"a": 0.6, "b": 0.6}
    assert run(watch, fleet, 1) == []  # a dip is not a recovery: the window starts again
    fleet.cores["kvm1"] = {"a": 0.4, "b": 0.4}
    assert run(watch, fleet, 1) == []
    events = run(watch, fleet, 1)
    assert kinds(events) == [("host_recovered", "kvm1")] and events[0]["cpu_percent"] == 40.0
    assert run(watch, fleet, 3) == []


def test_memory_alone_makes_a_host_hot(fleet):
    watch = LoadWatch(memory_high=50, memory_low=30, duration=5)
    run(watch, fleet, 1)
    fleet.cores["kvm2"].update(d=0.0, e=0.0, f=0.0)  # 4 x 2 GiB of 16 GiB = 50 %
    assert kinds(run(watch, fleet, 2)) == [("host_overloaded", "kvm2")]


def test_a_host_that_goes_away_and_comes_back(fleet):
    watch = LoadWatch(duration=5)
    run(watch, fleet, 1)
    fleet.down.add("kvm2")
    events = run(watch, fleet, 3)
    assert kinds(events) == [("host_unreachable", "kvm2")] and events[0]["error"] == "connection refused"
    fleet.down.clear()
    assert kinds(run(watch, fleet, 2)) == [("host_reachable", "kvm2")]


def test_a_host_down_at_the_start_is_reported(fleet):
    fleet.down.add("kvm1")
    assert kinds(LoadWatch().observe(fleet.step(), fleet.now)) == [("host_unreachable", "kvm1")]


def test_a_host_under_maintenance_is_not_judged(fleet):
    watch = LoadWatch(cpu_high=80, duration=5)
    run(watch, fleet, 1)
    fleet.maintenance.add("kvm1")
    fleet.cores["kvm1"] = {"a": 1.0, "b": 1.0}
    assert run(watch, fleet, 5) == []
    fleet.maintenance.clear()
    assert run(watch, fleet, 1) == []  # the window starts when the mark is gone
    assert kinds(run(watch, fleet, 1)) == [("host_overloaded", "kvm1")]


def test_repeat_after_fires_again_while_still_hot(fleet):
    watch = LoadWatch(cpu_high=80, duration=5, repeat_after=20)
    run(watch, fleet, 1)
    fleet.cores["kvm1"] = {"a": 1.0, "b": 1.0}
    events = run(watch, fleet, 10)  # 50 s hot: fires at 5 s, 25 s, 45 s
    assert [event["repeat"] for event in events] == [0, 1, 2]


def test_a_guest_that_appears_between_readings_counts_from_its_next_reading(fleet):
    watch = LoadWatch(cpu_high=80, duration=5)
    run(watch, fleet, 1)
    fleet.counters["new"] = 500 * SECOND  # arrived by migration with a big counter
    fleet.cores["kvm1"]["new"] = 0.5
    events = run(watch, fleet, 1)
    assert events == []  # no delta for it yet: 20 %, not hundreds
    assert watch.hosts["kvm1"].last["cpu_percent"] == 20.0


@pytest.mark.parametrize("settings, message", [
    (dict(cpu_low=90), "cpu_low (90.0) must be at least 0 and below cpu_high (80.0)"),
    (dict(duration=-1), "duration must be 0 or more"),
    (dict(cpu_high="hot"), "cpu_high must be a number, got 'hot'"),
    (dict(threshold=3), "unknown setting threshold"),
])
def test_bad_settings_are_refused_with_a_reason(settings, message):
    with pytest.raises(WatchSettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        LoadWatch(**settings)
