"""The playbooks run the way AWX runs a job template: ansible-runner on a private data
directory (project, inventory, env/extravars and env/envvars as the job template and its
credential would give them), the outcome read from runner's artefacts - status, rc, job
events and the set_stats artifacts a workflow passes on."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from guest_placement import where

RUNNER = Path(sys.executable).parent / "ansible-runner"


def job(lab, ansible_env, tmp_path, project_playbook, extra_vars, ident):
    """Run one 'job'; (status, rc, events, artifact_data)."""
    data_dir = tmp_path / "runner"
    (data_dir / "project").mkdir(parents=True, exist_ok=True)
    (data_dir / "inventory").mkdir(exist_ok=True)
    (data_dir / "env").mkdir(exist_ok=True)
    # a project playbook, as AWX projects import the collection's
    (data_dir / "project" / f"{project_playbook}.yml").write_text(
        f"---\n- name: The collection's {project_playbook} playbook\n"
        f"  ansible.builtin.import_playbook: kvmops.virt.{project_playbook}\n")
    shutil.copy(lab.layout.inventory_path, data_dir / "inventory" / "hosts.yml")
    (data_dir / "env" / "extravars").write_text(yaml.safe_dump(extra_vars))
    # what a credential type injects, and the EE's settings
    settings = {key: ansible_env[key] for key in ansible_env if key.startswith("ANSIBLE_")}
    (data_dir / "env" / "envvars").write_text(yaml.safe_dump(dict(settings, KVMOPS_LIBVIRT_USERNAME="awx")))
    done = subprocess.run([str(RUNNER), "run", str(data_dir), "-p", f"{project_playbook}.yml", "--ident", ident],
                          env=ansible_env, capture_output=True, text=True, timeout=600, check=False)
    artifacts = data_dir / "artifacts" / ident
    status = (artifacts / "status").read_text().strip()
    rc = int((artifacts / "rc").read_text())
    event_files = sorted((artifacts / "job_events").glob("*.json"), key=lambda path: int(path.name.split("-")[0]))
    events = [json.loads(path.read_text()) for path in event_files]
    stats = [event for event in events if event["event"] == "playbook_on_stats"]
    assert stats, done.stdout[-3000:]
    return status, rc, events, stats[-1]["event_data"].get("artifact_data", {}), done.stdout


def task_results(events, task, kind="runner_on_ok"):
    return [event["event_data"]["res"] for event in events
            if event["event"] == kind and event["event_data"].get("task") == task]


@pytest.fixture
def hot_kvm1(lab):
    names = ["it-awx-1", "it-awx-2"]
    for name in names:
        lab.remove_guest_if_defined(name)
    lab.create_guests(dict.fromkeys(names, "kvm1"), load=60)
    time.sleep(3)
    yield names
    for name in names:
        lab.remove_guest_if_defined(name)


def test_a_rebalance_job_relieves_kvm1_and_hands_its_outcome_on(lab, ansible_env, tmp_path, hot_kvm1, figures):
    report = tmp_path / "report.html"
    started = time.monotonic()
    status, rc, events, artifacts, output = job(
        lab, ansible_env, tmp_path, "rebalance",
        # as the rulebook's run_job_template or a survey would give them
        dict(host="kvm1", policy="hotspot", dry_run=False, rebalance_cpu_high=40, rebalance_sample_seconds=3,
             rebalance_report_path=str(report)), "rebalance-1")
    assert (status, rc) == ("successful", 0), output[-3000:]
    [verdict] = task_results(events, "The host that started it")
    assert verdict["msg"].startswith("kvm1: CPU ") and verdict["msg"].endswith("relieved"), verdict
    started_moves = task_results(events, "Start the migrations, wave 1")
    assert started_moves, "no migration task in the job events"
    outcome = artifacts["rebalance"]
    assert outcome["dry_run"] is False and outcome["hot_after"] == [] and len(outcome["moved"]) == 1, outcome
    guest, source, destination = outcome["moved"][0].split()
    assert guest in hot_kvm1 and source == "kvm1" and destination in ("kvm2", "kvm3")
    assert "Rebalance hotspot" in report.read_text()
    figures("AWX-style job (ansible-runner): rebalance relieves kvm1", f"{time.monotonic() - started:.1f} s, moved {guest}")


def test_a_job_without_its_required_variable_fails_with_the_reason(lab, ansible_env, tmp_path):
    status, rc, events, _artifacts, _output = job(lab, ansible_env, tmp_path, "maintenance", {}, "maintenance-1")
    assert status == "failed" and rc != 0
    [failure] = task_results(events, "Refuse to run without maintenance_targets", kind="runner_on_failed")
    assert "give -e maintenance_targets=<hypervisors>" in failure["msg"]


def test_a_maintenance_job_drains_a_hypervisor_and_another_takes_it_out(lab, ansible_env, tmp_path, run_module):
    name = "it-awx-drain"
    lab.remove_guest_if_defined(name)
    lab.create_guest(name, "kvm3", load=5)
    fleet = [dict(name=host, uri=lab.host(host).spec.uri) for host in ("kvm1", "kvm2", "kvm3")]
    try:
        status, rc, events, _artifacts, output = job(
            lab, ansible_env, tmp_path, "maintenance", dict(maintenance_targets="kvm3", maintenance_reason="AWX test"),
            "maintenance-enter")
        assert (status, rc) == ("successful", 0), output[-3000:]
        [drained] = [event["event_data"]["res"] for event in events if event["event"] == "runner_on_ok"
                     and event["event_data"].get("task", "").startswith("Hypervisor maintenance")]
        assert [item["guest"] for item in drained["moved"]] == [name], drained
        placement = where(lab, name)
        assert len(placement) == 1 and set(placement) <= {"kvm1", "kvm2"}, placement
        assert list(placement.values()) == [(True, True)], placement

        status, rc, _events, _artifacts, output = job(
            lab, ansible_env, tmp_path, "maintenance", dict(maintenance_targets="kvm3", maintenance_state="exit"),
            "maintenance-exit")
        assert (status, rc) == ("successful", 0), output[-3000:]
        left = run_module("hypervisor_maintenance", dict(hypervisors=fleet, names=["kvm3"], state="exit"))
        assert not left.get("failed") and left["changed"] is False, "the exit job left kvm3 in maintenance"
    finally:
        lab.remove_guest_if_defined(name)
        run_module("hypervisor_maintenance", dict(hypervisors=fleet, names=["kvm3"], state="exit"))
