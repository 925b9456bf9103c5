"""host_facts: the arithmetic on its own, and gathering many hosts in parallel threads."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ansible_collections.kvmops.virt.plugins.module_utils.connection import LibvirtConnection
from ansible_collections.kvmops.virt.plugins.module_utils.host_facts import (
    SUBSETS,
    allocation_totals,
    cpu_usage_percent,
    gather_host_facts,
    normalize_subsets,
    overcommit_ratios,
    virtualization_facts,
)
from ansible_collections.kvmops.virt.plugins.module_utils.safe_xml import parse_xml

BEFORE = dict(user=1000, kernel=500, idle=8000, iowait=500)


def test_cpu_usage_is_user_and_kernel_over_all_time_including_idle_and_iowait():
    after = dict(user=1200, kernel=600, idle=8600, iowait=600)  # busy 300 of 1000
    assert cpu_usage_percent(BEFORE, after) == 30.0


@pytest.mark.parametrize("before, after", [
    (None, BEFORE),
    (BEFORE, None),
    (BEFORE, BEFORE),  # counters that never move: the test driver
    (BEFORE, dict(user=10, kernel=5, idle=80, iowait=5)),  # counters reset: the host rebooted
])
def test_cpu_usage_is_none_when_it_cannot_be_measured(before, after):
    assert cpu_usage_percent(before, after) is None


def test_subsets_all_expands_and_unknown_ones_are_named():
    assert normalize_subsets(["all"]) == set(SUBSETS)
    assert normalize_subsets(["cpu", "all"]) == set(SUBSETS)
    assert normalize_subsets([]) == set()
    with pytest.raises(ValueError, match="unknown subset.s. disks, gpus; choose from all, cpu"):
        normalize_subsets(["gpus", "cpu", "disks"])


def _capabilities(*guests):
    arches = "".join(f"<guest><os_type>hvm</os_type><arch name='{arch}'>"
                     + "".join(f"<domain type='{kind}'/>" for kind in kinds) + "</arch></guest>"
                     for arch, kinds in guests)
    return parse_xml(f"<capabilities><host><cpu><arch>x86_64</arch></cpu></host>{arches}</capabilities>")


@pytest.mark.parametrize("guests, expected", [
    ((("i686", ["qemu", "kvm"]), ("x86_64", ["qemu", "kvm"])), dict(kvm=True, domain_types=["kvm", "qemu"])),
    ((("x86_64", ["qemu"]),), dict(kvm=False, domain_types=["qemu"])),
    ((("aarch64", ["kvm"]), ("x86_64", ["qemu"])), dict(kvm=False, domain_types=["qemu"])),  # only its own arch counts
    ((), dict(kvm=False, domain_types=[])),
])
def test_virtualization_says_whether_the_host_offers_kvm_for_its_own_arch(guests, expected):
    assert virtualization_facts(_capabilities(*guests)) == expected


def test_overcommit_is_none_without_capacity_and_a_ratio_otherwise():
    totals = allocation_totals([
        dict(name="a", uuid="1", active=True, vcpus=4, memory=2048),
        dict(name="b", uuid="2", active=False, vcpus=2, memory=1024),
    ])
    assert totals == dict(defined=2, running=1, vcpus_running=4, vcpus_defined=6,
                          memory_running=2048, memory_defined=3072)
    assert overcommit_ratios(totals, 0, None) == dict(vcpus_running=None, vcpus_defined=None,
                                                      memory_running=None, memory_defined=None)
    assert overcommit_ratios(totals, 3, 4096) == dict(vcpus_running=1.333, vcpus_defined=2.0,
                                                      memory_running=0.5, memory_defined=0.75)


def _node(tmp_path, index):
    """A private test host with ``index`` running guests of ``index`` vCPUs each and 4*index CPUs."""
    guests = "".join(
        f"<domain type='test'><name>g{n}</name><memory unit='MiB'>{128 * index}</memory>"
        f"<vcpu>{index}</vcpu><os><type>hvm</type></os></domain>" for n in range(index))
    node = tmp_path / f"node{index}.xml"
    node.write_text(f"<node><cpu><mhz>2000</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets>"
                    f"<cores>{4 * index}</cores><threads>1</threads><active>{4 * index}</active></cpu>"
                    f"<memory>{1048576 * index}</memory>{guests}</node>")
    return f"test://{node}"


def test_many_hosts_gather_in_parallel_threads_each_with_its_own_connection(tmp_path):
    uris = [_node(tmp_path, index) for index in range(1, 7)]

    def facts_of(uri):
        with LibvirtConnection(uri, readonly=True) as conn:
            return gather_host_facts(conn, ["cpu", "guests"], sample_seconds=0.2)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(uris)) as pool:
        fleet = dict(zip(uris, pool.map(facts_of, uris)))
    assert time.monotonic() - started < 0.8, "the 0.2 s sampling windows did not overlap (6 in a row: 1.2 s)"
    for index, uri in enumerate(uris, start=1):
        host = fleet[uri]
        assert host["uri"] == uri
        assert host["cpu"]["logical_cpus"] == 4 * index
        assert (host["guests"]["running"], host["guests"]["vcpus_running"]) == (index, index * index)
        assert host["guests"]["memory_running"] == index * 128 * index * 1024 * 1024
        assert host["overcommit"]["vcpus_running"] == pytest.approx(index / 4, abs=0.001)
