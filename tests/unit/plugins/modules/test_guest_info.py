"""kvmops.virt.guest_info on libvirt's test driver (live CPU figures: tests/integration)."""

import libvirt
import pytest

URI = "test:///default"


@pytest.fixture(scope="module")
def fleet(run_module, test_driver_state):
    """Three guests with tags: info-web-1 and info-web-2 running, info-db-1 stopped."""
    guests = {"info-web-1": ("running", {"role": "web", "env": "prod"}),
              "info-web-2": ("running", {"role": "web", "env": "test"}),
              "info-db-1": ("stopped", {"role": "db", "env": "prod", "migratable": False})}
    for name, (state, tags) in guests.items():
        result = run_module("guest", dict(uri=URI, name=name, vcpus=2, memory=256, state=state, tags=tags))
        assert not result.get("failed"), result
    yield guests
    for name in guests:
        domain = test_driver_state.lookupByName(name)
        if domain.isActive():
            domain.destroy()
        domain.undefine()


def names(result):
    return [guest["name"] for guest in result["guests"]]


def test_lists_guests_the_way_the_guest_module_describes_them(run_module, fleet):
    result = run_module("guest_info", dict(uri=URI, name=["info-*"], sample_seconds=0))
    assert result["changed"] is False
    assert names(result) == ["info-db-1", "info-web-1", "info-web-2"]
    web = result["guests"][1]
    described = run_module("guest", dict(uri=URI, name="info-web-1"))["guest"]
    for key in ("uuid", "state", "vcpus", "memory", "tags", "disks", "interfaces", "autostart"):
        assert web[key] == described[key], key
    assert web["usage"]["cpu_cores"] is None  # no window, no CPU figure
    assert result["guests"][0]["id"] is None and isinstance(web["id"], int)


@pytest.mark.parametrize("filters, expected", [
    (dict(name=["info-web-1", "info-db-*"]), ["info-db-1", "info-web-1"]),
    (dict(name=["info-*"], state=["stopped"]), ["info-db-1"]),
    (dict(name=["info-*"], tags=dict(role="web")), ["info-web-1", "info-web-2"]),
    (dict(name=["info-*"], tags=dict(env="prod", role="web")), ["info-web-1"]),
    (dict(name=["info-*"], tags=dict(migratable=False)), ["info-db-1"]),
    (dict(name=["info-*"], tags=dict(migratable="false")), []),  # types count
    (dict(name=["nothing-like-this"]), []),
])
def test_filters(run_module, fleet, filters, expected):
    assert names(run_module("guest_info", dict(uri=URI, sample_seconds=0, **filters))) == expected


def test_query_applies_jmespath_to_the_result(run_module, fleet):
    result = run_module("guest_info", dict(uri=URI, name=["info-*"], sample_seconds=0,
                                           query="[?tags.env=='prod'].{name: name, state: state}"))
    assert result["query_result"] == [{"name": "info-db-1", "state": "stopped"},
                                      {"name": "info-web-1", "state": "running"}]


def test_check_mode_gives_the_same_answer(run_module, fleet):
    args = dict(uri=URI, name=["info-*"], sample_seconds=0)
    assert run_module("guest_info", args, check=True)["guests"] == run_module("guest_info", args)["guests"]


@pytest.mark.parametrize("args, message", [
    (dict(query="[?name=="), "query: "),
    (dict(sample_seconds=-1), "sample_seconds: must be 0 or more"),
    (dict(state=["asleep"]), "value of state must be one or more of"),
    (dict(tags={"no good": 1}), "tags: 'no good' is not a valid tag name"),
])
def test_bad_options_fail_clearly(run_module, args, message):
    result = run_module("guest_info", dict(uri=URI, **args))
    assert result["failed"] and message in result["msg"], result


def test_state_reads_from_the_bulk_statistics(run_module, fleet, test_driver_state):
    domain = test_driver_state.lookupByName("info-web-2")
    domain.suspend()
    try:
        result = run_module("guest_info", dict(uri=URI, name=["info-web-2"], sample_seconds=0))
        assert result["guests"][0]["state"] == "paused"
    finally:
        domain.resume()
    assert domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING
