"""The job execution environment and the decision environment: `ansible-builder create` on
both definitions, as shipped, and a check of the build context it generates (there is no
container engine here to build the images). The collection's own requirements are found by
the introspection script ansible-builder puts in the context, run on the installed
collection, as the builder stage of the image would run it."""

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEFINITIONS = {"ee": Path("execution-environment.yml"), "de": Path("extensions/eda/decision-environment.yml")}


@pytest.fixture(name="tarball")
def tarball_fixture(collection_tarball):
    return collection_tarball


def create_context(kind, tarball, workdir):
    """The definition copied where it sits in the repository, next to the versionless tarball
    `make build` leaves in .build/; returns the generated context."""
    definition = workdir / DEFINITIONS[kind]
    definition.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / DEFINITIONS[kind], definition)
    (workdir / ".build").mkdir(exist_ok=True)
    shutil.copy(tarball, workdir / ".build" / "kvmops-virt.tar.gz")
    context = workdir / kind
    done = subprocess.run([str(BIN / "ansible-builder"), "create", "-f", str(definition), "-c", str(context),
                           "--output-filename", "Containerfile"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return context


@pytest.mark.parametrize("kind", sorted(DEFINITIONS))
def test_the_context_installs_python_ansible_and_this_collection(kind, tarball, tmp_path):
    context = create_context(kind, tarball, tmp_path)
    containerfile = (context / "Containerfile").read_text()
    assert 'ARG EE_BASE_IMAGE="quay.io/centos/centos:stream9"' in containerfile
    assert 'ARG PYCMD="/usr/bin/python3.11"' in containerfile
    assert 'ARG ANSIBLE_INSTALL_REFS="ansible-core>=2.16,<2.20 ansible-runner>=2.4,<2.5"' in containerfile
    assert "config-manager --set-enabled crb" in containerfile  # libvirt-devel, to build libvirt-python
    assert "ansible-galaxy collection install" in containerfile and "COPY _build /build" in containerfile
    galaxy = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    assert galaxy == {"collections": [{"name": "collections/kvmops-virt.tar.gz", "type": "file"}]}
    shipped = context / "_build" / "collections" / "kvmops-virt.tar.gz"
    with tarfile.open(shipped) as archive:
        names = archive.getnames()
    assert {"MANIFEST.json", "meta/execution-environment.yml", "requirements.txt", "bindep.txt"} <= set(names)
    system = (context / "_build" / "bindep.txt").read_text()
    assert "python3.11-devel [platform:rpm compile]" in system


def test_the_decision_environment_has_ansible_rulebook_and_java(tarball, tmp_path):
    context = create_context("de", tarball, tmp_path)
    assert "ansible-rulebook>=1.1,<1.4" in (context / "_build" / "requirements.txt").read_text()
    assert "java-17-openjdk-headless [platform:rpm]" in (context / "_build" / "bindep.txt").read_text()
    assert "RUN ansible-rulebook --version" in (context / "Containerfile").read_text()


def test_the_builder_stage_finds_what_the_collection_needs(tarball, tmp_path):
    context = create_context("ee", tarball, tmp_path)
    collections = tmp_path / "collections"
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "--force", "-p", str(collections),
                    str(context / "_build" / "collections" / "kvmops-virt.tar.gz")], check=True, capture_output=True)
    done = subprocess.run([sys.executable, str(context / "_build" / "scripts" / "introspect.py"), "introspect",
                           "--sanitize", str(collections)], capture_output=True, text=True, check=True)
    found = yaml.safe_load(done.stdout)
    assert "libvirt-python>=9.0.0  # from collection kvmops.virt" in found["python"]
    assert "jmespath>=1.0.1,<2  # from collection kvmops.virt" in found["python"]  # the inventory's query
    # what the image's final stage installs on an RPM system: the libvirt client and ssh
    for package in ("libvirt-libs [platform:rpm]", "openssh-clients [platform:rpm]", "libvirt-devel [platform:rpm compile]"):
        assert f"{package}  # from collection kvmops.virt" in found["system"], found["system"]
