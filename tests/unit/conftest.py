"""Unit tests run modules in-process (run_module, tests/conftest.py) on libvirt's test driver."""

import libvirt
import pytest


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
