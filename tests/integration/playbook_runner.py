"""Run the collection's playbooks on the lab the way an operator would, and read the recap."""

import re
import subprocess
import sys
import time
from pathlib import Path

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"
TEMPLATE = "lab-template"        # made by playbooks/lab_template.yml on every lab host
TEMPLATE_HOST = "kvm1"
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def run_playbook(ansible_env, lab, name, *extra_vars):
    """Run one of the collection's playbooks on the lab; (recap per host, seconds)."""
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(lab.layout.inventory_path),
               str(PLAYBOOKS / name)]
    for extra in extra_vars:
        command += ["-e", extra]
    started = time.monotonic()
    done = subprocess.run(command, env=ansible_env, capture_output=True, text=True, timeout=900, check=False)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    recap = {host: dict(ok=int(ok), changed=int(changed), failed=int(failed))
             for host, ok, changed, _unreachable, failed in RECAP.findall(done.stdout)}
    return recap, elapsed
