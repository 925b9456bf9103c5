"""Unit tests run modules in-process (run_module, tests/conftest.py) on libvirt's test driver."""

import subprocess
import sys
from pathlib import Path

import libvirt
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", autouse=True)
def test_driver_state():
    """libvirt's test:///default keeps its guests, pools and networks only while some
    connection is open; holding one for the session lets one module run see the last's."""
    conn = libvirt.open("test:///default")
    yield conn
    conn.close()


@pytest.fixture(name="driver")
def driver_fixture(test_driver_state):
    """The session's connection to test:///default, to look at and clean up what a module did."""
    return test_driver_state


@pytest.fixture(scope="session")
def collection_tarball(tmp_path_factory):
    """The collection built from this checkout by ansible-galaxy, once per run."""
    out = tmp_path_factory.mktemp("build")
    subprocess.run([str(Path(sys.executable).parent / "ansible-galaxy"), "collection", "build", "--force",
                    "--output-path", str(out), str(REPO)], check=True, capture_output=True)
    (built,) = out.glob("kvmops-virt-*.tar.gz")
    return built
