"""A real ansible-rulebook on the lab: start it with a rulebook of the collection, read what
it printed (its log, and the events its rules printed with print_event), stop it."""

import ast
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

EVENT_BLOCK = re.compile(r"\[event\] \*+\n(\{.*?\})\n\*+", re.S)


class RulebookRun:
    """ansible-rulebook -i <lab inventory> -r <rulebook> --vars <variables>, output in a file."""

    def __init__(self, ansible_env, lab, rulebook, variables, workdir):
        self.log_path = Path(workdir) / "rulebook.log"
        vars_path = Path(workdir) / "rulebook-vars.yml"
        vars_path.write_text(yaml.safe_dump(dict(variables, kvmops_inventory=str(lab.layout.inventory_path))))
        bin_dir = Path(sys.executable).parent
        # ansible-rulebook finds collections through ansible-galaxy, and runs ansible-playbook: both from PATH
        env = dict(ansible_env, PATH=f"{bin_dir}:{ansible_env.get('PATH', '')}", PYTHONUNBUFFERED="1")
        self.started = time.time()
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(  # pylint: disable=consider-using-with
                [str(bin_dir / "ansible-rulebook"), "-i", str(lab.layout.inventory_path), "-r", rulebook,
                 "--vars", str(vars_path), "-v"], env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)  # its own process group: stop() ends the playbooks it runs too

    def text(self):
        return self.log_path.read_text(errors="replace")

    def alive(self):
        return self.process.poll() is None

    def wait_for(self, pattern, timeout=60.0):
        """The first match of ``pattern`` in the output; fails when the time is up or the engine ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.text())
            if found:
                return found
            assert self.alive(), f"ansible-rulebook ended (rc {self.process.returncode}):\n{self.text()[-4000:]}"
            time.sleep(0.2)
        raise AssertionError(f"ansible-rulebook printed no {pattern!r} within {timeout} s:\n{self.text()[-4000:]}")

    def events(self, kind=None):
        """The events the rules printed (print_event), in order; only those of ``kind`` if given."""
        found = [ast.literal_eval(block) for block in EVENT_BLOCK.findall(self.text())]
        return [event for event in found if kind is None or event.get("type") == kind]

    def wait_for_event(self, kind, host=None, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events(kind):
                if host is None or event.get("host") == host:
                    return event
            assert self.alive(), f"ansible-rulebook ended (rc {self.process.returncode}):\n{self.text()[-4000:]}"
            time.sleep(0.2)
        raise AssertionError(f"no {kind} event for {host} within {timeout} s:\n{self.text()[-4000:]}")

    def stop(self):
        if self.alive():
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
