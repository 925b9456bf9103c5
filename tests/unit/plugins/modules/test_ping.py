"""kvmops.virt.ping run by ansible itself (ad hoc), against libvirt's test driver."""

import json
import subprocess
import time
from pathlib import Path

import pytest


def run_ping(ansible_env, *module_args, check=False):
    """Run the module on localhost; returns (status, module result, whole output).

    status is what ansible prints for the host: SUCCESS or FAILED!."""
    command = ["ansible", "localhost", "-c", "local", "-i", "localhost,", "-m", "kvmops.virt.ping",
               "-a", " ".join(module_args)]
    if check:
        command.append("--check")
    env = dict(ansible_env, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    # minimal prints "localhost | SUCCESS => {...}" (or FAILED!) with the module's result
    line, _arrow, result = done.stdout.partition(" => ")
    assert result, done.stdout + done.stderr
    status = line.rpartition(" | ")[2]
    assert (status == "SUCCESS") == (done.returncode == 0), done.stdout + done.stderr
    return status, json.loads(result), done.stdout + done.stderr


def test_ping_describes_the_hypervisor(ansible_env):
    status, result, _output = run_ping(ansible_env, "uri=test:///default")
    assert status == "SUCCESS", result
    assert result["changed"] is False
    assert result["driver"] == "TEST"
    assert result["uri"] == "test:///default"
    assert result["libvirt_version"].count(".") == 2
    assert result["host_uuid"] is None  # the test driver has none; real hosts: tests/integration
    assert result["secure"] is True


def test_ping_works_in_check_mode(ansible_env):
    status, result, _output = run_ping(ansible_env, "uri=test:///default", check=True)
    assert status == "SUCCESS" and result["driver"] == "TEST"


def test_password_never_appears_in_output(ansible_env):
    status, result, output = run_ping(ansible_env, "uri=test:///default", "username=alice", "password=Hunter2-secret")
    assert status == "SUCCESS", result
    assert "Hunter2-secret" not in output


def test_unreachable_hypervisor_fails_fast_and_says_why(ansible_env, figures, closed_port):
    uri = f"qemu+tcp://127.0.0.1:{closed_port}/system"
    started = time.monotonic()
    status, result, _output = run_ping(ansible_env, f"uri={uri}", "connect_timeout=5")
    elapsed = time.monotonic() - started
    figures("ping an address nobody listens on (ansible)", f"failed after {elapsed:.1f} s, whole ansible run")
    assert status == "FAILED!"
    assert result["msg"].startswith(f"Could not open a connection on {uri}: ")
    assert "refused" in result["msg"].lower()
    assert result["uri"] == uri and result["operation"] == "open a connection"


@pytest.mark.parametrize("args, message", [
    (("uri=test:///default", "connect_timeout=soon"), "connect_timeout"),
    (("uri=test:///default", "colour=blue"), "Unsupported parameters"),
])
def test_bad_options_are_refused_before_connecting(ansible_env, args, message):
    status, result, _output = run_ping(ansible_env, *args)
    assert status == "FAILED!"
    assert message in result["msg"]


def test_module_defaults_group_sets_the_connection(ansible_env):
    playbook = Path(__file__).parent / "playbooks" / "module_defaults.yml"
    done = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", str(playbook)],
                          env=ansible_env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok=2" in done.stdout and "failed=0" in done.stdout
