"""kvmops.virt.alertmanager (event filter): Alertmanager notifications in, host events out,
duplicates dropped, bad input logged and dropped, never an exception. Loaded as
ansible-rulebook loads it. Real Alertmanager: tests/integration/test_rulebook_on_lab.py."""

import copy
import json
import logging
import subprocess
import sys

import pytest

HYPERVISORS = [dict(name="kvm1", uri="qemu+tcp://127.0.0.2/system"), dict(name="kvm2", uri="qemu+tcp://127.0.0.3/system")]


def alert(host="kvm1", status="firing", fingerprint="f1", name="KvmHostCpuHigh", value="92.5", **labels):
    labels = dict(dict(alertname=name, kvm_host=host) if host else dict(alertname=name), **labels)
    return dict(status=status, labels=labels, annotations=dict(value=value, summary="hot"),
                startsAt="2026-11-21T18:00:00Z", endsAt="0001-01-01T00:00:00Z", fingerprint=fingerprint,
                generatorURL="http://127.0.0.1:9090/graph")


def notification(*alerts, status="firing"):
    return dict(payload=dict(version="4", groupKey="{}:{alertname=\"KvmHostCpuHigh\"}", status=status,
                             receiver="kvmops", groupLabels={}, commonLabels={}, commonAnnotations={},
                             externalURL="http://127.0.0.1:9093", alerts=list(alerts)),
                meta=dict(endpoint="alerts", headers={}))


@pytest.fixture
def splitter(eda_plugin):
    return eda_plugin("event_filter/alertmanager")["main"]


def test_each_alert_becomes_a_host_event(splitter):
    events = splitter(notification(alert("kvm1", fingerprint="a"), alert("kvm2", fingerprint="b", value="x")),
                      hypervisors=HYPERVISORS)
    assert [(event["type"], event["host"], event["uri"]) for event in events] == [
        ("host_overloaded", "kvm1", "qemu+tcp://127.0.0.2/system"), ("host_overloaded", "kvm2", "qemu+tcp://127.0.0.3/system")]
    assert events[0]["cpu_percent"] == 92.5 and "cpu_percent" not in events[1]
    assert events[0]["source"] == "alertmanager" and events[0]["alert"]["name"] == "KvmHostCpuHigh"
    assert events[0]["alert"]["fingerprint"] == "a" and events[0]["alert"]["starts_at"] == "2026-11-21T18:00:00Z"


def test_a_repeated_notification_passes_once_and_a_change_of_status_always(splitter):
    firing = notification(alert())
    assert len(splitter(copy.deepcopy(firing), hypervisors=HYPERVISORS)) == 1
    assert splitter(copy.deepcopy(firing), hypervisors=HYPERVISORS) == []  # Alertmanager re-sent it
    resolved = splitter(notification(alert(status="resolved"), status="resolved"), hypervisors=HYPERVISORS)
    assert [event["type"] for event in resolved] == ["host_recovered"]
    assert len(splitter(copy.deepcopy(firing), hypervisors=HYPERVISORS)) == 1  # hot again: news


def test_after_the_ttl_the_same_alert_passes_again(splitter):
    assert len(splitter(notification(alert()), hypervisors=HYPERVISORS, ttl=0)) == 1
    assert len(splitter(notification(alert()), hypervisors=HYPERVISORS, ttl=0)) == 1


def test_only_the_named_alerts_pass(splitter):
    events = splitter(notification(alert(name="DiskFull", fingerprint="d"), alert(fingerprint="c")),
                      hypervisors=HYPERVISORS, alert_names=["KvmHostCpuHigh"])
    assert [event["alert"]["fingerprint"] for event in events] == ["c"]


# in a process of its own: reading an inventory loads ansible's controller code, which
# changes how this process's in-process module runs report warnings (tests/conftest.py)
FROM_INVENTORY = """
import json, runpy, sys
splitter = runpy.run_path(sys.argv[1])["main"]
print(json.dumps(splitter(json.loads(sys.argv[2]), inventory=sys.argv[3])))
"""


def test_the_uri_comes_from_an_inventory_or_from_a_label(splitter, eda_plugin_path, tmp_path):
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all:\n  children:\n    kvm_hypervisors:\n      hosts:\n"
                         "        kvm1: {libvirt_uri: 'qemu+tcp://127.0.0.2/system'}\n")
    done = subprocess.run([sys.executable, "-c", FROM_INVENTORY, str(eda_plugin_path("event_filter/alertmanager")),
                           json.dumps(notification(alert(fingerprint="i"))), str(inventory)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    [event] = json.loads(done.stdout)
    assert event["uri"] == "qemu+tcp://127.0.0.2/system"
    [event] = splitter(notification(alert(fingerprint="l", libvirt_uri="qemu+tcp://127.0.0.4/system")))
    assert event["uri"] == "qemu+tcp://127.0.0.4/system"


@pytest.mark.parametrize("event, message", [
    (dict(meta={}), "not an Alertmanager notification (no payload.alerts)"),
    (dict(payload="text"), "not an Alertmanager notification"),
    (dict(payload=dict(alerts="none")), "not an Alertmanager notification"),
    (notification("not a dict"), "alert 0 has no labels; skipped"),
    (notification(alert(host=None)), "alert KvmHostCpuHigh has no label kvm_host naming the hypervisor; skipped"),
    (notification(alert(host="kvm9")), "names hypervisor kvm9, which is not among kvm1, kvm2; skipped"),
    (notification(alert(status="pending")), "has status 'pending', not one of firing, resolved; skipped"),
])
def test_bad_input_is_logged_and_dropped(splitter, caplog, event, message):
    with caplog.at_level(logging.WARNING):
        assert splitter(event, hypervisors=HYPERVISORS) == []
    assert message in caplog.text


def test_bad_arguments_are_logged_and_the_notification_dropped(splitter, caplog):
    with caplog.at_level(logging.WARNING):
        assert splitter(notification(alert()), hypervisors=HYPERVISORS, inventory="/nowhere.yml") == []
    assert "give either hypervisors (a list of name and uri) or inventory (a path), not both" in caplog.text
