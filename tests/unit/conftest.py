"""Run a module's main() in this process, the way ansible would, and return its result."""

import contextlib
import importlib
import io
import json

import libvirt
import pytest
from ansible.module_utils.common import warnings as ansible_warnings
from ansible.module_utils.testing import patch_module_args


def run_module(name, args, check=False, diff=True):
    """The result dict of kvmops.virt.<name> with ``args``; failures come back with failed=True."""
    module = importlib.import_module(f"ansible_collections.kvmops.virt.plugins.modules.{name}")
    args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    output = io.StringIO()
    # warnings are process-global in ansible; a real module process starts without any
    ansible_warnings._global_warnings.clear()  # pylint: disable=protected-access
    with patch_module_args(args), contextlib.redirect_stdout(output), pytest.raises(SystemExit):
        module.main()
    result = json.loads(output.getvalue())
    result["warnings"] = [warning["event"]["msg"] for warning in result.get("warnings", [])]
    return result


@pytest.fixture(name="run_module", scope="session")
def run_module_fixture():
    return run_module


@pytest.fixture(scope="session", autouse=True)
def test_driver_state():
    """libvirt's test:///default keeps its guests, pools and networks only while some
    connection is open; holding one for the session lets one module run see the last's."""
    conn = libvirt.open("test:///default")
    yield conn
    conn.close()
