"""The planner benchmark's own logic (tests/benchmarks/placement/): the trace model, the data
centre's figures on cases worked out by hand, the baselines, the integer program. The day-long
figures come from `make bench-placement`, never from a test."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "placement"))

import milp_benchmark  # pylint: disable=wrong-import-position
import trace_benchmark  # pylint: disable=wrong-import-position
from datacenter import Simulation, Trace  # pylint: disable=wrong-import-position
from strategies import NoMigration, ThresholdMmt  # pylint: disable=wrong-import-position


def test_the_planetlab_days_are_found():
    assert [day.stem for day in trace_benchmark.DAYS] == ["20110303", "20110306"], trace_benchmark.TRACE_DIRS


def write_trace(tmp_path, rows):
    path = tmp_path / "day.csv"
    samples = len(rows[0])
    lines = ["vm," + ",".join("t%d" % index for index in range(samples))]
    lines += ["%d,%s" % (number, ",".join(str(value) for value in row)) for number, row in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_vm_types_follow_row_order_and_two_zero_samples_end_a_vm(tmp_path):
    trace = Trace(write_trace(tmp_path, [[10, 0, 0, 5], [10, 0, 5, 0], [0, 0, 1, 1], [50, 50, 50, 50], [1, 1, 1, 1]]))
    # 5 rows, ceil(5/4) = 2 per type
    assert list(trace.mips) == [2500, 2500, 2000, 2000, 1000]
    assert list(trace.ram) == [870, 870, 1740, 1740, 1740]
    assert list(trace.end) == [2, 4, 1, 4, 4]
    assert list(trace.demand(2)) == [0.0, 125.0, 0.0, 1000.0, 10.0]


def test_one_vm_on_one_host_draws_the_interpolated_power(tmp_path):
    trace = Trace(write_trace(tmp_path, [[50, 50]]))
    figures = Simulation(trace, NoMigration()).run()
    # 1250 MIPS on a G4 (3720 MIPS): 33.6 %, between 96 W (30 %) and 99.5 W (40 %); 600 s
    watts = 96 + (1250 / 3720 - 0.3) * 10 * 3.5
    assert figures["energy_kwh"] == pytest.approx(watts * 600 / 3.6e6)
    assert figures["mean_active_hosts"] == pytest.approx(1.0)
    assert figures["migrations"] == 0 and figures["overload_percent"] == 0 and figures["pdm_percent"] == 0


def test_an_overloaded_host_counts_its_overload_time_and_a_migration_its_loss(tmp_path):
    # a 2500- and a 2000-MIPS VM (two rows: one of each of the first two types) at 100 % do not fit
    # host 0 (a G4, 3720 MIPS) together, so first fit uses two hosts
    trace = Trace(write_trace(tmp_path, [[100, 100], [100, 100]]))
    figures = Simulation(trace, NoMigration()).run()
    assert figures["mean_active_hosts"] == pytest.approx(2.0)
    assert figures["overload_percent"] == pytest.approx(0.0)

    class MoveOnce:  # pylint: disable=too-few-public-methods
        def decide(self, view):
            if view.sample == 0:
                return [[(0, 1), (1, 1)]]  # both on the G5: 4500 of 5320 MIPS
            return [[(0, 0)]] if view.sample == 1 else []

    figures = Simulation(Trace(write_trace(tmp_path, [[100, 100, 100], [100, 100, 100]])), MoveOnce()).run()
    assert figures["migrations"] == 1
    # 870 MB at 62.5 MB/s: 13.92 s losing 10 % of 2500 MIPS, of 4500 MIPS asked over 900 s
    assert figures["pdm_percent"] == pytest.approx(100 * (13.92 * 250) / (4500 * 900), rel=1e-6)


def test_the_baselines_and_the_planner_on_the_start_of_a_real_day():
    rows = {name: trace_benchmark.run(trace_benchmark.DAYS[0], name, limit=300, samples=36) for name in ("none", "thr", "kvmops")}
    assert rows["none"]["migrations"] == 0
    assert rows["thr"]["migrations"] > rows["kvmops"]["migrations"] > 0
    assert rows["kvmops"]["energy_kwh"] < rows["none"]["energy_kwh"] / 2
    assert rows["kvmops"]["overload_percent"] <= rows["thr"]["overload_percent"]
    assert all(row["unplaced_vm_hours"] == 0 for row in rows.values())
    table = trace_benchmark.table(list(rows.values()))
    assert table.splitlines()[0].startswith("day ") and len(table.splitlines()) == 5


def test_thr_moves_the_least_ram_first_until_below_the_threshold(tmp_path):
    trace = Trace(write_trace(tmp_path, [[100] * 3, [60] * 3, [60] * 3, [10] * 3]))
    policy = ThresholdMmt()
    simulation = Simulation(trace, policy)
    simulation.host_of[:] = [1, 1, 1, 1]  # all on one G5: 2500 + 1200 + 1200 + 100 = 5000 of 5320 (94 %)
    from datacenter import View  # pylint: disable=import-outside-toplevel
    [wave] = policy.decide(View(simulation, 1))
    # RAM: 870, 1740, 1740, 1740: VM 0 has the least RAM and its leaving (2500 MIPS) clears 80 %
    assert [vm for vm, _host in wave][:1] == [0]


def test_the_integer_program_finds_the_fewest_moves():
    snapshot = dict(hosts=[dict(name="a", cpus=4, memory_mb=8192), dict(name="b", cpus=4, memory_mb=8192),
                           dict(name="c", cpus=4, memory_mb=8192)],
                    guests=[dict(name="g%d" % number, host="a", vcpus=1, memory_mb=512, cpu_cores=1.0, tags={})
                            for number in range(6)])
    # 6 cores on a, 3.2 allowed: three must leave
    assert milp_benchmark.fewest_moves(snapshot, milp_benchmark.SETTINGS) == 3
    pinned = dict(snapshot, guests=[dict(guest, tags=dict(migratable=False)) for guest in snapshot["guests"]])
    assert milp_benchmark.fewest_moves(pinned, milp_benchmark.SETTINGS) is None


def test_the_planner_is_near_the_minimum_on_random_instances(capsys):
    assert milp_benchmark.main(["--instances", "15", "--hot", "5", "--seed", "11"]) == 0
    assert "ratio planner / optimum: mean" in capsys.readouterr().out
