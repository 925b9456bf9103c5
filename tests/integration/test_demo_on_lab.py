"""`make demo`, run the way the README tells a user to, on the test run's lab: it must
finish, and its timeline must show the whole story in order (the overload detected, the
plan, the migration, kvm1 relieved and recovered, then nothing moving back)."""

import re
import subprocess
import time
from pathlib import Path

from lab.demo import CLONED, DEMO_FLEET

ROOT = Path(__file__).resolve().parents[2]
TIMELINE = (
    r"\] ansible-rulebook runs kvmops\.virt\.rebalance",
    r"\] the load of web-1 and web-2 on kvm1 rises",
    r"\] host_overloaded: kvm1 at \d+ % for \d+ s",
    r"\] plan: wave 1: web-\d kvm1 -> kvm\d",
    r"\] migration of web-\d to kvm\d starts",
    r"\] kvm1: CPU [\d.]+ % -> [\d.]+ %",
    r"\] host_recovered: kvm1",
    r"\] the load drops back",
    r"\] nothing moved back or on",
)


def test_make_demo_tells_the_whole_story(lab, run_module, figures):
    started = time.monotonic()
    try:
        done = subprocess.run(["make", "--no-print-directory", "demo"], cwd=ROOT, capture_output=True, text=True,
                              timeout=900, check=False)
    finally:
        for name, host, _role, _load in DEMO_FLEET:
            if name in CLONED:
                removed = run_module("guest", dict(uri=lab.host(host).spec.uri, name=name, state="absent",
                                                   remove_storage=True))
                assert not removed.get("failed"), removed
            else:
                lab.remove_guest_if_defined(name)
    elapsed = time.monotonic() - started
    output = done.stdout
    assert done.returncode == 0, output[-4000:] + done.stderr[-2000:]
    position = 0
    for step in TIMELINE:
        found = re.compile(step).search(output, position)
        assert found, f"the demo's timeline lacks {step!r} after position {position}:\n{output[-3000:]}"
        position = found.end()
    steps = {name: float(at) for at, name in re.findall(r"\[\s*([\d.]+) s\] (host_overloaded|migration|host_recovered)",
                                                        output)}
    figures("make demo (whole run, fleet included)",
            f"{elapsed:.0f} s; overload detected at {steps['host_overloaded']:.1f} s, migration at "
            f"{steps['migration']:.1f} s, recovered at {steps['host_recovered']:.1f} s")
