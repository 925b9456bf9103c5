"""Run the collection's playbooks on the lab the way an operator would, and read the recap."""

import re
import subprocess
import sys
import time
from pathlib import Path

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"
TEST_PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"
TEMPLATE = "lab-template"        # made by playbooks/lab_template.yml on every lab host
TEMPLATE_HOST = "kvm1"
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def playbook_command(lab, playbook, extra_vars=(), options=()):
    """ansible-playbook on the lab's inventory; ``playbook`` is a name in playbooks/ or a path."""
    path = playbook if isinstance(playbook, Path) else PLAYBOOKS / playbook
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(lab.layout.inventory_path),
               str(path), *options]
    for extra in extra_vars:
        command += ["-e", extra]
    return command


def recap_of(stdout):
    return {host: dict(ok=int(ok), changed=int(changed), failed=int(failed))
            for host, ok, changed, _unreachable, failed in RECAP.findall(stdout)}


def run_playbook(ansible_env, lab, name, *extra_vars, options=(), succeed=True):
    """Run one of the collection's playbooks on the lab; (recap per host, seconds). With
    succeed=False it must fail, and the output comes back instead of the recap."""
    started = time.monotonic()
    done = subprocess.run(playbook_command(lab, name, extra_vars, options), env=ansible_env, capture_output=True,
                          text=True, timeout=900, check=False)
    elapsed = time.monotonic() - started
    if not succeed:
        assert done.returncode != 0, done.stdout[-4000:]
        return done.stdout, elapsed
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    return recap_of(done.stdout), elapsed
