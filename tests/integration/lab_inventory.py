"""The kvmops.virt.libvirt inventory plugin over the lab: its configuration and one run."""

import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

from inventory_output import plain


def write_config(directory, lab, extra_hypervisors=(), inventory=None, stem="lab", **options):
    """A plugin configuration that takes the hypervisors from the lab's inventory file (or
    another one the lab wrote, over another transport)."""
    config = dict(plugin="kvmops.virt.libvirt",
                  hypervisors_from=dict(inventory=str(inventory or lab.layout.inventory_path)),
                  hypervisors=[dict(name=name, uri=uri) for name, uri in extra_hypervisors], **options)
    path = Path(directory) / f"{stem}.kvmops.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def inventory_list(ansible_env, config):
    """(the inventory, its stderr, seconds) of ansible-inventory --list."""
    started = time.monotonic()
    done = subprocess.run([str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(config), "--list"],
                          env=ansible_env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return plain(json.loads(done.stdout)), done.stderr, time.monotonic() - started


def hosts_of(data, group):
    return sorted(data.get(group, {}).get("hosts", []))
