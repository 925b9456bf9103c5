"""kvmops.virt.host_info on the real lab: identity, memory, guests and CPU use of real hypervisors.

The three lab hosts share this machine's kernel, so a lab host's memory and CPU figures
are the machine's own, which the tests read independently from /proc.
"""

import contextlib
import io
import json
import os
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import libvirt
import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.kvmops.virt.plugins.module_utils.connection import LibvirtConnection
from ansible_collections.kvmops.virt.plugins.module_utils.host_facts import gather_host_facts
from ansible_collections.kvmops.virt.plugins.modules import host_info

MIB = 1024 ** 2
WINDOW = 2.0  # seconds of CPU sampling: many of the guest's 100 ms load periods
ROUNDS = 3


def run_host_info(**args):
    """host_info's result, run in this process so the test can read /proc around it."""
    output = io.StringIO()
    with patch_module_args(dict(args, _ansible_check_mode=False)), contextlib.redirect_stdout(output):
        with pytest.raises(SystemExit):
            host_info.main()
    result = json.loads(output.getvalue())
    assert not result.get("failed"), result
    return result["host"]


def meminfo_total():
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        (kib,) = re.findall(r"^MemTotal:\s+(\d+) kB$", meminfo.read(), re.MULTILINE)
    return int(kib) * 1024


def proc_stat_times():
    """(busy, total) jiffies of the whole machine, split the way libvirt splits them:
    busy = user + nice + system + irq + softirq, total = busy + idle + iowait."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(value) for value in stat.readline().split()[1:8]]
    user, nice, system, idle, iowait, irq, softirq = fields
    busy = user + nice + system + irq + softirq
    return busy, busy + idle + iowait


def measured_cpu(uri):
    """(host_info's usage, /proc/stat's usage over the same call) in percent."""
    busy0, total0 = proc_stat_times()
    usage = run_host_info(uri=uri, gather=["cpu"], sample_seconds=WINDOW)["cpu"]["usage_percent"]
    busy1, total1 = proc_stat_times()
    return usage, 100.0 * (busy1 - busy0) / (total1 - total0)


def qemu_version():
    done = subprocess.run(["/usr/bin/qemu-system-x86_64", "--version"], capture_output=True, text=True,
                          check=True, timeout=30)
    return re.search(r"version (\d+\.\d+\.\d+)", done.stdout).group(1)


def test_a_lab_host_reports_its_own_identity_and_the_machines_memory(lab, figures):
    spec = lab.host("kvm1").spec
    started = time.monotonic()
    host = run_host_info(uri=spec.uri, sample_seconds=0)
    figures("host_info, everything but CPU sampling (kvm1)", f"{(time.monotonic() - started) * 1000:.0f} ms")
    assert host["host_uuid"] == spec.host_uuid
    assert host["uri"] == spec.uri and host["driver"] == "QEMU"
    assert host["hypervisor_version"] == qemu_version()
    number = libvirt.getVersion()
    assert host["libvirt_version"] == "%d.%d.%d" % (number // 1000000, number // 1000 % 1000, number % 1000)
    assert host["arch"] == os.uname().machine
    assert host["cpu"]["logical_cpus"] == os.cpu_count()
    assert host["virtualization"]["kvm"] == os.path.exists("/dev/kvm")
    assert "qemu" in host["virtualization"]["domain_types"]
    memory = host["memory"]
    assert memory["source"] == "memory_stats"
    assert abs(memory["total"] - meminfo_total()) <= 0.01 * meminfo_total()
    assert 0 < memory["free"] < memory["total"]
    figures("host_info memory total vs /proc/meminfo", f"{memory['total']} vs {meminfo_total()} bytes")


def independent_allocation(uri):
    """(running, vCPUs, memory bytes) of the active guests, asked guest by guest."""
    with LibvirtConnection(uri, connect_timeout=5) as conn:
        active = conn.handle.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        infos = [dom.info() for dom in active]
    return len(active), sum(info[3] for info in infos), sum(info[2] for info in infos) * 1024


def test_a_guest_adds_its_vcpus_and_memory_to_the_host(lab, guest_name):
    uri = lab.host("kvm2").spec.uri
    before = run_host_info(uri=uri, gather=["guests"], sample_seconds=0)
    lab.create_guest(guest_name, "kvm2", vcpus=2, memory_mib=384, load=0)
    host = run_host_info(uri=uri, gather=["guests", "cpu", "memory"], sample_seconds=0)
    guests = host["guests"]
    assert {key: guests[key] - before["guests"][key] for key in guests} == dict(
        defined=1, running=1, vcpus_running=2, vcpus_defined=2, memory_running=384 * MIB,
        memory_defined=384 * MIB)
    assert (guests["running"], guests["vcpus_running"], guests["memory_running"]) == independent_allocation(uri)
    assert host["overcommit"]["vcpus_running"] == pytest.approx(guests["vcpus_running"] / os.cpu_count(), abs=0.001)
    assert host["overcommit"]["memory_running"] == pytest.approx(guests["memory_running"] / host["memory"]["total"],
                                                                 abs=0.001)


def test_cpu_use_follows_a_guests_load(lab, guest_name, figures):
    """One vCPU at 100 % costs one of the machine's cores: about 50 points of the host's CPU
    use on two cores. Other work on this machine (other people's tests) only ever adds CPU
    use, so the least of a few alternating windows is each state's best measurement."""
    uri = lab.host("kvm1").spec.uri
    lab.create_guest(guest_name, "kvm1", vcpus=1, load=0)
    time.sleep(2)  # let the boot's own CPU use die down
    windows = {0: [], 100: []}
    for _round in range(ROUNDS):
        for load in (0, 100):
            lab.set_load(guest_name, load)
            time.sleep(0.5)  # loadd applies a new load from its next 100 ms period
            usage, proc = measured_cpu(uri)
            assert 0 <= usage <= 100
            assert abs(usage - proc) <= 10, f"host_info says {usage}%, /proc/stat {proc:.1f}% over the same window"
            windows[load].append(usage)
    idle, loaded = min(windows[0]), min(windows[100])
    figures("host CPU use, lab guest idle vs 100% (least of 3)",
            f"{idle:.0f}% vs {loaded:.0f}% of {os.cpu_count()} cores (all: {windows[0]} vs {windows[100]})")
    one_core = 100.0 / os.cpu_count()
    assert 0.5 * one_core <= loaded - idle <= 1.5 * one_core


def test_sample_seconds_zero_measures_nothing_on_a_real_host(lab):
    started = time.monotonic()
    host = run_host_info(uri=lab.host("kvm1").spec.uri, gather=["cpu"], sample_seconds=0)
    assert host["cpu"]["usage_percent"] is None
    assert time.monotonic() - started < 1.0


def test_all_lab_hosts_gather_in_parallel_in_one_window(lab, figures):
    specs = [host.spec for host in lab.running_hosts()]

    def facts_of(spec):
        with LibvirtConnection(spec.uri, connect_timeout=5, readonly=True) as conn:
            return gather_host_facts(conn, sample_seconds=1.0)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(specs)) as pool:
        fleet = list(pool.map(facts_of, specs))
    elapsed = time.monotonic() - started
    figures(f"host facts of {len(specs)} lab hosts in parallel (1 s window)", f"{elapsed:.2f} s")
    assert [facts["host_uuid"] for facts in fleet] == [spec.host_uuid for spec in specs]
    assert all(facts["cpu"]["usage_percent"] is not None for facts in fleet)
    assert elapsed < 1.0 * len(specs), "the hosts' sampling windows did not overlap"
