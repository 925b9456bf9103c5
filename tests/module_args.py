"""Run a module's main() in this process with given arguments, on every ansible-core the
collection claims: 2.19 has ansible.module_utils.testing for it, older cores read the
arguments from ``basic._ANSIBLE_ARGS``. Warnings come back as their texts either way."""

import contextlib
import json

from ansible.module_utils import basic
from ansible.module_utils.common import warnings as ansible_warnings

__all__ = ["forget_warnings", "patch_module_args", "warning_texts"]

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core before 2.19

    @contextlib.contextmanager
    def patch_module_args(args):
        saved = basic._ANSIBLE_ARGS  # pylint: disable=protected-access
        basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()  # pylint: disable=protected-access
        try:
            yield
        finally:
            basic._ANSIBLE_ARGS = saved  # pylint: disable=protected-access


def forget_warnings():
    """Warnings are process-global in ansible; a real module process starts without any."""
    ansible_warnings._global_warnings.clear()  # pylint: disable=protected-access


def warning_texts(warnings):
    """2.19 reports each warning as a dict with its text under event.msg; older cores as the text."""
    return [warning["event"]["msg"] if isinstance(warning, dict) else warning for warning in warnings]
