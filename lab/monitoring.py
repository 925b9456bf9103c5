"""Prometheus, Alertmanager and their exporters for the lab, on loopback ports.

One libvirt exporter per lab hypervisor (Debian's prometheus-libvirt-exporter takes one
URI) and one node exporter for the machine (every lab host has the machine's cores),
scraped once per lab host with the label ``kvm_host``, as the collection's Prometheus
rules expect (extensions/eda/prometheus/). Each process runs in a session of its own and
is stopped with it; nothing outlives ``stop()``.
"""

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request

import yaml

PROMETHEUS_PORT = 19090
ALERTMANAGER_PORT = 19093
NODE_EXPORTER_PORT = 19100
LIBVIRT_EXPORTER_PORT = 19177  # + the lab host's index


class MonitoringError(RuntimeError):
    """A monitoring process that did not start or answer."""


class Monitoring:
    """start(rules_text, alertmanager_text); query(promql); alerts(); stop()."""

    def __init__(self, layout, hosts):
        self.dir = layout.root / "monitoring"
        self.hosts = hosts  # lab host specs: name, index, uri
        self.processes = []

    def prometheus_config(self):
        libvirt = [dict(targets=[f"127.0.0.1:{LIBVIRT_EXPORTER_PORT + host.index}"],
                        labels=dict(kvm_host=host.name, libvirt_uri=host.uri)) for host in self.hosts]
        node = [dict(targets=[f"127.0.0.1:{NODE_EXPORTER_PORT}"], labels=dict(kvm_host=host.name)) for host in self.hosts]
        return {"global": dict(scrape_interval="2s", evaluation_interval="2s"), "rule_files": ["rules.yml"],
                "alerting": dict(alertmanagers=[dict(static_configs=[dict(targets=[f"127.0.0.1:{ALERTMANAGER_PORT}"])])]),
                "scrape_configs": [dict(job_name="libvirt", static_configs=libvirt),
                                   dict(job_name="node", static_configs=node)]}

    def _write(self, rules_text, alertmanager_text):
        # a fresh start: Prometheus restores firing alerts from its data, Alertmanager its notifications
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        (self.dir / "rules.yml").write_text(rules_text)
        (self.dir / "alertmanager.yml").write_text(alertmanager_text)
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(self.prometheus_config(), sort_keys=False))

    def _spawn(self, name, command):
        log = (self.dir / f"{name}.log").open("w")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,  # pylint: disable=consider-using-with
                                   start_new_session=True, cwd=self.dir)
        log.close()
        self.processes.append((name, process))

    def start(self, rules_text, alertmanager_text, timeout=60):
        self._write(rules_text, alertmanager_text)
        for host in self.hosts:
            self._spawn(f"libvirt-exporter-{host.name}", [
                "prometheus-libvirt-exporter", f"--libvirt.uri={host.uri}",
                f"--web.listen-address=127.0.0.1:{LIBVIRT_EXPORTER_PORT + host.index}"])
        self._spawn("node-exporter", ["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{NODE_EXPORTER_PORT}"])
        self._spawn("alertmanager", [
            "prometheus-alertmanager", "--config.file=alertmanager.yml", "--storage.path=alertmanager-data",
            f"--web.listen-address=127.0.0.1:{ALERTMANAGER_PORT}", "--cluster.listen-address="])
        self._spawn("prometheus", [
            "prometheus", "--config.file=prometheus.yml", "--storage.tsdb.path=prometheus-data",
            f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"])
        for port in (PROMETHEUS_PORT, ALERTMANAGER_PORT):
            self._wait_ready(port, timeout)

    def _wait_ready(self, port, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes:
                if process.poll() is not None:
                    raise MonitoringError(f"{name} exited: {(self.dir / f'{name}.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise MonitoringError(f"nothing ready on 127.0.0.1:{port} within {timeout} s")

    def _get(self, port, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return json.load(answer)

    def query(self, promql):
        """Prometheus's instant vector for ``promql``: [{metric: {...}, value: [time, "text"]}]."""
        return self._get(PROMETHEUS_PORT, "/api/v1/query?" + urllib.parse.urlencode(dict(query=promql)))["data"]["result"]

    def alerts(self):
        """The alerts Alertmanager holds now."""
        return self._get(ALERTMANAGER_PORT, "/api/v2/alerts")

    def stop(self):
        for _name, process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for _name, process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes = []
