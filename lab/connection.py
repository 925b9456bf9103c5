"""The collection's own connection layer and XML parser, for the lab.

Loaded from the source tree by path: the lab runs without the collection installed, and
those modules need nothing but libvirt and the standard library. So the lab gets the same bounded connect time and
error messages as the collection (a hung daemon must not hang 'lab down').
"""

import importlib.util
import sys

from .layout import REPO_ROOT


def _load(name):
    """plugins/module_utils/<name>.py of the source tree, as module kvmops_virt_<name>."""
    module_name = "kvmops_virt_" + name
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, REPO_ROOT / "plugins" / "module_utils" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


_connection = _load("connection")
LibvirtConnection = _connection.LibvirtConnection
LibvirtOperationError = _connection.LibvirtOperationError
run_event_loop = _connection.run_event_loop
parse_xml = _load("safe_xml").parse_xml

# Lab hosts are on loopback: anything slower than this is a hung daemon.
LAB_CONNECT_TIMEOUT = 5.0


def open_lab_connection(uri):
    """An open libvirt handle to a lab host; raises LibvirtOperationError within 5 s."""
    return LibvirtConnection(uri, connect_timeout=LAB_CONNECT_TIMEOUT).open()
