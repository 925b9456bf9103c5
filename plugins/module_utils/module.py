# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The base of every kvmops.virt module that talks to a hypervisor.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.
"""

from __future__ import annotations

import traceback
from contextlib import contextmanager

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

from ansible_collections.kvmops.virt.plugins.module_utils.connection import (
    CONNECTION_ARGUMENT_SPEC,
    LibvirtConnection,
    LibvirtOperationError,
    redact_uris_in,
)

try:
    import libvirt  # noqa: F401  pylint: disable=unused-import
except ImportError:
    LIBVIRT_IMPORT_ERROR = traceback.format_exc()
else:
    LIBVIRT_IMPORT_ERROR = None


class LibvirtModule(AnsibleModule):
    """AnsibleModule with the shared connection options and libvirt errors as fail_json."""

    def __init__(self, argument_spec=None, with_uri=True, **kwargs):
        # with_uri=False: a module that talks to hypervisors it is given as a list takes
        # only the credentials and timeout of the shared options
        spec = {key: value for key, value in CONNECTION_ARGUMENT_SPEC.items() if with_uri or key != "uri"}
        # the same variables the inventory plugin reads: an AWX credential type injects them once for both
        spec["username"] = dict(spec["username"], fallback=(env_fallback, ["KVMOPS_LIBVIRT_USERNAME"]))
        spec["password"] = dict(spec["password"], fallback=(env_fallback, ["KVMOPS_LIBVIRT_PASSWORD"]))
        spec.update(argument_spec or {})
        super().__init__(argument_spec=spec, **kwargs)
        if LIBVIRT_IMPORT_ERROR is not None:
            self.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_IMPORT_ERROR)

    def fail_json(self, msg, **kwargs):
        """The one way out on failure: no URI in the message, the result or the invocation
        shows its password (messages name the URI as given, and a password written into it
        is not a no_log value)."""
        kwargs.setdefault("invocation", dict(module_args=self.params))
        super().fail_json(msg=redact_uris_in(str(msg)), **_redacted(kwargs))

    def exit_json(self, **kwargs):
        """As fail_json: the result and the invocation without the password of any URI."""
        kwargs.setdefault("invocation", dict(module_args=self.params))
        super().exit_json(**_redacted(kwargs))

    @contextmanager
    def connection(self, readonly=False):
        """An open LibvirtConnection; any LibvirtOperationError in the block fails the module."""
        conn = LibvirtConnection.from_params(self.params, readonly=readonly)
        try:
            conn.open()
            yield conn
        except LibvirtOperationError as error:
            self.fail_json(msg=str(error), uri=error.uri, operation=error.operation, libvirt_error=error.detail)
        finally:
            conn.close()


def _redacted(value):
    if isinstance(value, str):
        return redact_uris_in(value)
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(item) for item in value]
    return value
