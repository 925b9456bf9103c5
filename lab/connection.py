"""The collection's own connection layer, for the lab.

Loaded from the source tree by path: the lab runs without the collection installed, and
that module needs nothing but libvirt. So the lab gets the same bounded connect time and
error messages as the collection (a hung daemon must not hang 'lab down').
"""

import importlib.util
import sys

from .layout import REPO_ROOT

_NAME = "kvmops_virt_connection"


def _load():
    if _NAME in sys.modules:
        return sys.modules[_NAME]
    spec = importlib.util.spec_from_file_location(_NAME, REPO_ROOT / "plugins" / "module_utils" / "connection.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_NAME] = module
    spec.loader.exec_module(module)
    return module


_connection = _load()
LibvirtConnection = _connection.LibvirtConnection
LibvirtOperationError = _connection.LibvirtOperationError
run_event_loop = _connection.run_event_loop

# Lab hosts are on loopback: anything slower than this is a hung daemon.
LAB_CONNECT_TIMEOUT = 5.0


def open_lab_connection(uri):
    """An open libvirt handle to a lab host; raises LibvirtOperationError within 5 s."""
    return LibvirtConnection(uri, connect_timeout=LAB_CONNECT_TIMEOUT).open()
