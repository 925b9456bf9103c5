"""The inventory sources the benchmark compares, and what they should list.

- ``kvmops``: kvmops.virt.libvirt, one configuration file for the whole fleet.
- ``community``: community.libvirt.libvirt from the ``ansible`` package on PyPI, one
  configuration file per hypervisor (it takes one URI per source).
- ``static``: the floor. The inventory kvmops.virt.libvirt produced, exported once and
  written as a static file that ansible-core's ``yaml`` plugin loads (JSON is YAML, and
  ``.json`` is one of its extensions; ansible parses it with the JSON parser).
- ``cached``: kvmops.virt.libvirt with a warm ``jsonfile`` cache.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from paths import COLLECTIONS_PATH  # first: puts the repository (for lab) on sys.path

from lab.collection import ansible_environment as environment_for  # pylint: disable=wrong-import-order

ANSIBLE_PACKAGE = "ansible==12.3.0"
ANSIBLE_WHEEL = "ansible-12.3.0-py3-none-any.whl"
COMMUNITY_PREFIX = "ansible_collections/community/libvirt/"


@dataclass(frozen=True)
class Contender:
    key: str
    label: str
    needs_network: bool


CONTENDERS = (
    Contender("kvmops", "kvmops.virt.libvirt", True),
    Contender("community", "community.libvirt", True),
    Contender("static", "static file (floor)", False),
    Contender("cached", "kvmops.virt.libvirt, warm cache", False),
)
CONTENDER_KEYS = tuple(contender.key for contender in CONTENDERS)


def contender(key):
    return next(item for item in CONTENDERS if item.key == key)


def ensure_community_libvirt(bench_root, log=print):
    """The collections directory holding community.libvirt, fetched once and kept under bench_root."""
    download = bench_root / "download"
    target = bench_root / "collections"
    manifest = target / COMMUNITY_PREFIX / "MANIFEST.json"
    wheel = download / ANSIBLE_WHEEL
    if manifest.is_file():
        return target
    if not wheel.is_file():
        download.mkdir(parents=True, exist_ok=True)
        log(f"downloading {ANSIBLE_PACKAGE} (only community.libvirt is used) into {download}")
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", ANSIBLE_PACKAGE,
                        "--dest", str(download)], check=True)
    shutil.rmtree(target / "ansible_collections" / "community" / "libvirt", ignore_errors=True)
    with zipfile.ZipFile(wheel) as archive:
        members = [name for name in archive.namelist() if name.startswith(COMMUNITY_PREFIX)]
        if not members:
            raise RuntimeError(f"{wheel} holds no {COMMUNITY_PREFIX}")
        archive.extractall(target, members)
    return target


def community_libvirt_version(collections_dir):
    manifest = collections_dir / COMMUNITY_PREFIX / "MANIFEST.json"
    return json.loads(manifest.read_text())["collection_info"]["version"]


def ansible_environment(work_dir, community_dir):
    """The same environment for every contender: this venv's ansible-core, no stray config."""
    config = work_dir / "ansible.cfg"
    config.write_text("# empty: every contender runs with ansible-core's defaults\n")
    paths = [COLLECTIONS_PATH] + ([community_dir] if community_dir else [])
    clean = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    return environment_for(clean, paths, ANSIBLE_CONFIG=str(config))


def ansible_inventory_command(sources, action="list", export=False):
    """ansible-inventory -i SOURCE... --list (or --graph: host and group names only)."""
    command = [str(Path(sys.executable).parent / "ansible-inventory")]
    for source in sources:
        command += ["-i", str(source)]
    command.append("--" + action)
    if export:
        command.append("--export")
    return command


# ----------------------------------------------------------------- configuration files

def write_kvmops_config(path, hypervisors, connect_timeout, max_workers, cache_dir=None):
    """hypervisors: (name, uri) pairs."""
    config = {
        "plugin": "kvmops.virt.libvirt",
        "hypervisors": [{"name": name, "uri": uri} for name, uri in hypervisors],
        "max_workers": max_workers,
        "connect_timeout": connect_timeout,
    }
    if cache_dir is not None:
        config.update(cache=True, cache_plugin="ansible.builtin.jsonfile", cache_connection=str(cache_dir),
                      cache_timeout=3600)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def write_community_configs(directory, hypervisors):
    """One source file per hypervisor; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, uri in hypervisors:
        path = directory / f"{name}.yml"
        path.write_text(yaml.safe_dump({"plugin": "community.libvirt.libvirt", "uri": uri}, sort_keys=False))
        paths.append(path)
    return paths


# ----------------------------------------------------------------- the static floor

def static_from_export(listing):
    """ansible-inventory --list --export output -> the same inventory in the yaml plugin's format.

    Every host's variables once under ``all.hosts``; every group under ``all.children``
    with its hosts (no variables), its own variables and its child groups by name.
    """
    hostvars = listing.get("_meta", {}).get("hostvars", {})
    hosts = {name: None for name in _all_hosts(listing)}
    hosts.update({name: dict(variables) for name, variables in hostvars.items()})
    groups = {}
    for name, group in listing.items():
        if name in ("_meta", "all", "ungrouped"):
            continue
        entry = {}
        if group.get("hosts"):
            entry["hosts"] = {host: None for host in group["hosts"]}
        if group.get("vars"):
            entry["vars"] = dict(group["vars"])
        if group.get("children"):
            entry["children"] = {child: None for child in group["children"]}
        groups[name] = entry
    # a group without hosts or children (kvm_maintenance when no host is in maintenance)
    # has no entry of its own in the listing, only its name among its parent's children
    for group in listing.values():
        for child in group.get("children", []) if isinstance(group, dict) else []:
            if child not in ("ungrouped",):
                groups.setdefault(child, {})
    everything = {"hosts": hosts}
    if listing.get("all", {}).get("vars"):
        everything["vars"] = dict(listing["all"]["vars"])
    everything["children"] = groups
    return {"all": everything}


def _all_hosts(listing):
    found = set(listing.get("_meta", {}).get("hostvars", {}))
    for name, group in listing.items():
        if name != "_meta" and isinstance(group, dict):
            found.update(group.get("hosts") or [])
    return found


def listed_hosts(listing):
    """Every host name in ansible-inventory --list output."""
    return _all_hosts(listing)


def write_static(path, inventory):
    # in the exported order, so ansible lists it exactly as the plugin did
    path.write_text(json.dumps(inventory, separators=(",", ":")))
    return path


def listing_digest(listing):
    """A digest of an ansible-inventory --list output that ignores the order of groups and hosts."""
    normalized = {name: ({key: sorted(value) if isinstance(value, list) else value for key, value in group.items()}
                         if name != "_meta" else group)
                  for name, group in listing.items()}
    return hashlib.sha256(json.dumps(normalized, sort_keys=True).encode()).hexdigest()
