"""The locks in requirements/ still satisfy what they were made from, pin everything with
hashes, agree with each other, and are what the test virtualenv holds."""

import importlib.metadata
import sys
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from locks import (
    CONSTRAINED_BY, CORES, LOCKS, REPO, SOURCES, direct_requirements, read_lock, unsatisfied,
)

REFRESH = "change the direct requirements, then run 'make lock' and commit both"


def _bindep_requirements():
    return [requirement for requirement in direct_requirements(SOURCES["dev.lock"])
            if canonicalize_name(requirement.name) == "bindep"]


@pytest.mark.parametrize("lock", sorted(SOURCES))
def test_the_lock_satisfies_its_direct_requirements(lock):
    problems = unsatisfied(direct_requirements(SOURCES[lock]), read_lock(LOCKS / lock))
    assert not problems, f"requirements/{lock} is stale ({REFRESH}): " + "; ".join(problems)


def test_the_bindep_lock_satisfies_the_bindep_line():
    requirements = _bindep_requirements()
    assert len(requirements) == 1
    assert not unsatisfied(requirements, read_lock(LOCKS / "bindep.lock"))


def test_the_check_catches_a_requirement_changed_without_a_new_lock():
    """The check above can fail: requirements-dev.txt with pytest moved to another release."""
    source = SOURCES["dev.lock"]
    pins = read_lock(LOCKS / "dev.lock")
    changed = source.read_text().replace(f"pytest=={pins['pytest'].version}", "pytest==8.0.0")
    assert changed != source.read_text()
    problems = unsatisfied(direct_requirements(source, text=changed), pins)
    assert problems == [f"pytest==8.0.0 is not satisfied by the locked pytest=={pins['pytest'].version}"]
    added = unsatisfied(direct_requirements(source, text=source.read_text() + "\nrequests-kerberos\n"), pins)
    assert added == ["requests-kerberos is not in the lock"]


@pytest.mark.parametrize("lock", sorted(path.name for path in LOCKS.glob("*.lock")))
def test_every_locked_package_is_pinned_with_hashes(lock):
    pins = read_lock(LOCKS / lock)
    assert pins, f"requirements/{lock} pins nothing"
    unhashed = sorted(name for name, pin in pins.items() if pin.hashes == 0)
    assert not unhashed, f"requirements/{lock} has entries without a hash: {unhashed}"


@pytest.mark.parametrize("lock", sorted(CONSTRAINED_BY))
def test_locks_pin_what_they_share_alike(lock):
    pins, constraint = read_lock(LOCKS / lock), read_lock(LOCKS / CONSTRAINED_BY[lock])
    differ = sorted(f"{name} {pins[name].version} vs {constraint[name].version}"
                    for name in pins.keys() & constraint.keys() if pins[name].version != constraint[name].version)
    assert not differ, f"requirements/{lock} and {CONSTRAINED_BY[lock]} disagree ({REFRESH}): {differ}"


def test_each_core_lock_holds_its_own_ansible_core():
    for core in CORES:
        version = read_lock(LOCKS / f"core-{core}.lock")["ansible-core"].version
        assert f"{version.major}.{version.minor}" == core


def test_the_test_virtualenv_holds_exactly_the_locked_packages():
    if Path(sys.prefix).resolve() != (REPO / ".venv").resolve():
        pytest.skip(f"not running in the project's virtualenv ({sys.prefix}), which 'make venv' installs")
    locked = {}
    for lock in ("bootstrap.lock", "bindep.lock", "dev.lock"):
        locked.update({name: pin.version for name, pin in read_lock(LOCKS / lock).items()})
    installed = {canonicalize_name(dist.metadata["Name"]): dist.version for dist in importlib.metadata.distributions()}
    assert {name: str(version) for name, version in locked.items()} == installed
