"""The built collection: a clean tarball, and docs that ansible-doc renders."""

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# Nothing of these may ship: lab state, virtualenvs, caches, build output, dev tooling,
# and the tests (they need the lab and the Makefile).
FORBIDDEN_PARTS = {".lab", ".venv", ".build", ".git", ".ci", "__pycache__", ".pytest_cache", "lab", "tests"}
FORBIDDEN_SUFFIXES = (".pyc", ".tar.gz", ".qcow2", ".img")
ACTION_GROUP = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())["action_groups"]["libvirt"]


@pytest.fixture(name="tarball")
def tarball_fixture(collection_tarball):
    return collection_tarball


def test_tarball_holds_the_collection_and_nothing_else(tarball):
    with tarfile.open(tarball) as archive:
        names = archive.getnames()
        manifest = json.load(archive.extractfile("MANIFEST.json"))
    assert manifest["collection_info"]["namespace"] == "kvmops"
    assert manifest["collection_info"]["name"] == "virt"
    assert manifest["collection_info"]["license"] == ["GPL-3.0-or-later"]
    for required in ("meta/runtime.yml", "plugins/modules/ping.py", "plugins/module_utils/connection.py",
                     "plugins/doc_fragments/connection.py", "requirements.txt", "bindep.txt", "README.md",
                     "changelogs/config.yaml", "docs/lab.md"):
        assert required in names
    shipped_wrongly = [name for name in names
                       if FORBIDDEN_PARTS & set(Path(name).parts) or name.endswith(FORBIDDEN_SUFFIXES)]
    assert not shipped_wrongly


def test_tarball_stays_small(tarball):
    # a guard against shipping the lab, tests or data by accident, with room for the code to grow
    assert tarball.stat().st_size < 300_000


FLEET_MODULES = {"kvmops.virt.hypervisor_maintenance", "kvmops.virt.rebalance_plan"}


def test_ansible_doc_renders_every_module_with_the_shared_options(ansible_env):
    listed = subprocess.run([str(BIN / "ansible-doc"), "--list", "--json", "kvmops.virt"],
                            env=ansible_env, capture_output=True, text=True, check=True)
    modules = sorted(json.loads(listed.stdout))
    assert "kvmops.virt.ping" in modules
    for module in modules:
        rendered = subprocess.run([str(BIN / "ansible-doc"), module], env=ansible_env,
                                  capture_output=True, text=True, check=True).stdout
        assert "EXAMPLES" in rendered and "RETURN VALUES" in rendered, module
        described = subprocess.run([str(BIN / "ansible-doc"), "--json", module], env=ansible_env,
                                   capture_output=True, text=True, check=True).stdout
        doc = json.loads(described)[module]["doc"]
        assert {"username", "password", "connect_timeout"} <= set(doc["options"]), module
        assert {"check_mode", "diff_mode", "idempotent"} <= set(doc["attributes"]), module
        if module in FLEET_MODULES:
            # they take a list of hypervisors, not one uri: group module_defaults would give them one
            assert "uri" not in doc["options"] and "action_group" not in doc["attributes"], module
            assert module.rpartition(".")[2] not in ACTION_GROUP, module
            continue
        assert "uri" in doc["options"], module
        assert doc["attributes"]["action_group"]["membership"] == ["kvmops.virt.libvirt"], module
        assert module.rpartition(".")[2] in ACTION_GROUP, f"{module} is missing from meta/runtime.yml"
