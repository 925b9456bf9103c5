"""A real ansible-rulebook on the lab, and where the guests are while it acts: the demo and
the tests start a rulebook of the collection, read what it printed (its log, and the events
its rules printed with print_event), watch the guests move, and stop it."""

import ast
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import libvirt
import yaml

from .connection import LibvirtOperationError, open_lab_connection

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
            if not self.alive():
                raise AssertionError(f"ansible-rulebook ended (rc {self.process.returncode}):\n{self.text()[-4000:]}")
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
            if not self.alive():
                raise AssertionError(f"ansible-rulebook ended (rc {self.process.returncode}):\n{self.text()[-4000:]}")
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


class PlacementWatch:
    """Where each guest is active (running, or paused while it arrives), polled every 0.25 s
    in a thread. A guest seen on a host it was not on at the poll before has begun to
    arrive there: that is a migration start."""

    def __init__(self, lab, names):
        self.lab, self.names = lab, names
        self.hosts = [host.spec.name for host in lab.running_hosts()]
        self.arrivals = []  # (time, guest, host)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _active_on(self, host):
        """The watched guests active on ``host``, or None when it cannot be read right now."""
        try:
            conn = open_lab_connection(self.lab.host(host).spec.uri)
        except LibvirtOperationError:
            return None  # stopped (by a test), or mid-restart
        try:
            return {domain.name() for domain in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)} & set(self.names)
        except libvirt.libvirtError:
            return None  # busy mid-migration: the next poll tells
        finally:
            conn.close()

    def where(self, before=None):
        """guest -> hosts it is active on; a host that cannot be read keeps what ``before`` said."""
        found = {name: set() for name in self.names}
        for host in self.hosts:
            active = self._active_on(host)
            if active is None and before is not None:
                active = {name for name, hosts in before.items() if host in hosts}
            for name in active or ():
                found[name].add(host)
        return found

    def _poll(self):
        before = self.where()
        while not self._stop.wait(0.25):
            now, seen = time.time(), self.where(before)
            self.arrivals += [(now, name, host) for name in self.names for host in sorted(seen[name] - before[name])]
            before = seen

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)
