"""Read the locks in requirements/ and the direct requirements they were made from.

A lock is what ``uv pip compile --generate-hashes`` writes: ``name==version`` entries,
each followed by ``--hash=sha256:...`` lines. Direct requirements are pip requirement
files (``-r`` includes followed, relative to the including file).
"""

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
LOCKS = REPO / "requirements"
# The ansible-core releases meta/runtime.yml claims, each with a lock of its own.
CORES = ("2.16", "2.17", "2.18", "2.19")

# Each lock and the direct requirements it was compiled from (the Makefile's lock target).
SOURCES = {
    "bootstrap.lock": LOCKS / "bootstrap.in",
    "uv.lock": LOCKS / "uv.in",
    "dev.lock": REPO / "requirements-dev.txt",
    **{f"core-{core}.lock": LOCKS / f"core-{core}.in" for core in CORES},
}
# A lock compiled with another as its constraint must pin what they share alike.
CONSTRAINED_BY = {
    "uv.lock": "bootstrap.lock",
    "dev.lock": "bootstrap.lock",
    "bindep.lock": "dev.lock",
    **{f"core-{core}.lock": "bootstrap.lock" for core in CORES},
}

_ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")
_HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Pin:
    name: str
    version: Version
    hashes: int


def read_lock(path):
    """{canonical name: Pin} of a lock file."""
    pins = {}
    current = None
    for line in Path(path).read_text().splitlines():
        stripped = line.strip()
        entry = _ENTRY.match(line)
        if entry:
            current = canonicalize_name(entry.group(1))
            pins[current] = Pin(current, Version(entry.group(2)), len(_HASH.findall(line)))
        elif stripped.startswith("--hash=") and current is not None:
            pin = pins[current]
            pins[current] = Pin(pin.name, pin.version, pin.hashes + len(_HASH.findall(stripped)))
        elif stripped and not stripped.startswith("#"):
            raise ValueError(f"{path}: a line that is neither an entry, a hash nor a comment: {line!r}")
    return pins


def direct_requirements(path, text=None):
    """The Requirement objects of a requirements file and of every file it includes."""
    path = Path(path)
    requirements = []
    for line in (path.read_text() if text is None else text).splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-r "):
            requirements.extend(direct_requirements(path.parent / line[3:].strip()))
            continue
        requirements.append(Requirement(line))
    return requirements


def unsatisfied(requirements, pins):
    """What in ``requirements`` the pins do not satisfy, one sentence each."""
    problems = []
    for requirement in requirements:
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        pin = pins.get(canonicalize_name(requirement.name))
        if pin is None:
            problems.append(f"{requirement} is not in the lock")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{requirement} is not satisfied by the locked {pin.name}=={pin.version}")
    return problems
