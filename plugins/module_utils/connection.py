# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Open and close libvirt connections, and say clearly what went wrong.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

Every plugin of the collection reaches a hypervisor through ``LibvirtConnection``:

    with LibvirtConnection(uri, username, password, connect_timeout) as conn:
        with conn.operation("list guests"):
            domains = conn.handle.listAllDomains()

Any ``libvirtError`` becomes a ``LibvirtOperationError`` whose message names the URI, the
operation and libvirt's own text. Opening is bounded by ``connect_timeout`` whatever the
transport: libvirt itself has no connect timeout, and a TCP peer that accepts but never
answers (or an SSH host that never completes its handshake) would hang it forever.
"""

from __future__ import annotations

import re
import threading
from contextlib import contextmanager

try:
    from urllib.parse import urlsplit
except ImportError:  # Python 2: never a controller of this collection, but the import must not fail
    from urlparse import urlsplit  # type: ignore[no-redef]

try:
    import libvirt
except ImportError:
    libvirt = None


def _keep_quiet(_context, _error):
    """libvirt prints every error on stderr by default; the collection reports them itself."""


if libvirt is not None:
    libvirt.registerErrorHandler(_keep_quiet, None)

DEFAULT_URI = "qemu:///system"
DEFAULT_CONNECT_TIMEOUT = 10.0

# The same options in every module and plugin; documented once in the doc fragment
# kvmops.virt.connection.
CONNECTION_ARGUMENT_SPEC = dict(
    uri=dict(type="str", default=DEFAULT_URI),
    username=dict(type="str"),
    password=dict(type="str", no_log=True),
    connect_timeout=dict(type="float", default=DEFAULT_CONNECT_TIMEOUT),
)

_USERINFO_PASSWORD = re.compile(r"^([a-z0-9+.-]+://[^/@:]*):[^/@]*@", re.IGNORECASE)
_USERINFO_PASSWORD_IN_TEXT = re.compile(r"\b([a-z][a-z0-9+.-]*://[^/@:\s'\"]*):[^/@\s'\"]*@", re.IGNORECASE)


class LibvirtOperationError(Exception):
    """A libvirt call failed; str() is a complete sentence for a person to read: the
    operation, the URI, libvirt's reason and, for the failures people meet first, what to do."""

    def __init__(self, uri, operation, detail, code=None):
        self.uri = redact_uri(uri)
        self.operation = operation
        self.detail = detail
        self.code = code
        self.advice = advice_for(uri, detail)
        message = "Could not %s on %s: %s" % (operation, self.uri, detail.rstrip())
        if self.advice:
            message = "%s. What to do: %s" % (message.rstrip("."), self.advice)
        super().__init__(message)


# The failures of ssh and TLS transports that people meet first: a fragment of the reason
# libvirt (or ssh, through libvirt) gives, and what to do. With p2p migrations the source
# hypervisor dials the destination itself, so its own keys and certificates are the ones
# that count; the reason says so ("Failed to connect to remote libvirt URI").
_P2P = "Failed to connect to remote libvirt URI"
_P2P_URI = re.compile(re.escape(_P2P) + r" (\S+?):? ")
_ADVICE = (
    ("Host key verification failed",
     "the ssh host key of %(host)s is not in the known_hosts of the user that connects (or it changed). "
     "Check the key's fingerprint on %(host)s (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then add it "
     "to that user's ~/.ssh/known_hosts (ssh-keyscan -t ed25519 %(host)s)"),
    ("Permission denied (publickey",
     "sshd on %(host)s accepted none of the keys offered: add the connecting user's public key to "
     "~%(user)s/.ssh/authorized_keys on %(host)s, or name the key in the URI with ?keyfile=PATH"),
    ("does not match the hostname",
     "libvirtd's server certificate on %(host)s is not issued for the name in the URI: connect by a name or "
     "address its subjectAltName lists, or issue the certificate again for %(host)s"),
    # libvirt 9 says only this to the client (and logs the cause on the client's stderr)
    ("Failed to verify peer's certificate",
     "libvirtd's server certificate on %(host)s did not pass the client's checks: most often it is not issued for "
     "the name in the URI (its subjectAltName must list %(host)s); else it is not signed by the CA in the "
     "client's cacert.pem, or it has expired. libvirt's log line 'Certificate check failed' on stderr says which"),
    ("Cannot read CA certificate",
     "the connecting side has no TLS files: put cacert.pem in /etc/pki/CA/, clientcert.pem in /etc/pki/libvirt/ "
     "and clientkey.pem in /etc/pki/libvirt/private/, or add ?pkipath=DIR (a directory with all three) to the URI"),
    ("Cannot read certificate",
     "the connecting side has no TLS client certificate: put clientcert.pem in /etc/pki/libvirt/ and "
     "clientkey.pem in /etc/pki/libvirt/private/, or add ?pkipath=DIR to the URI"),
)
_P2P_ADVICE = ("the source hypervisor's libvirtd dials the destination itself (p2p), as root on the source: "
               "fix it there (for ssh, root's key and known_hosts on the source; for TLS, the source's client "
               "certificate under /etc/pki), give a URI the source can reach with p2p_uri, or use transport=direct "
               "(the controller relays)")


def advice_for(uri, detail, p2p=False):
    """What to do about a failure on ``uri`` whose reason is ``detail``, or None when there
    is no advice. ``p2p``: the failure is the source hypervisor's, dialling ``uri``."""
    dialled = _P2P_URI.search(detail)
    if dialled:  # the source's own words name the URI it dialled
        uri = dialled.group(1)
    try:
        parts = urlsplit(uri or "")
        host, user = parts.hostname or "the hypervisor", parts.username or "root"
    except ValueError:
        host, user = "the hypervisor", "root"
    p2p = p2p or _P2P in detail
    for fragment, advice in _ADVICE:
        if fragment in detail:
            if p2p:
                return "%s. In a p2p migration, %s" % (advice % dict(host="the destination (%s)" % host, user=user),
                                                       _P2P_ADVICE)
            return advice % dict(host=host, user=user)
    if _P2P in detail:
        return _P2P_ADVICE[0].upper() + _P2P_ADVICE[1:]
    return None


def timeout_reason(uri, seconds):
    """Why an open did not finish in time, and where to look, by the URI's transport."""
    scheme, _colon, rest = (uri or "").partition(":")
    transport = scheme.partition("+")[2]
    if transport in ("ssh", "libssh", "libssh2"):
        where = "is the host reachable, and does sshd answer on its port (22 unless the URI names one)?"
    elif transport == "tls" or (not transport and rest.startswith("//") and rest[2:3] not in ("/", "")):
        # a remote URI without a transport (qemu://host/system) is TLS
        where = "is the host reachable, and libvirtd listening with TLS (port 16514 unless the URI names one)?"
    else:
        where = "is the host reachable and libvirtd listening there?"
    return "no answer within %g seconds (connect_timeout); %s" % (seconds, where)


def redact_uri(uri):
    """The URI with any password in its user-info part replaced by ``***``."""
    return _USERINFO_PASSWORD.sub(r"\1:***@", uri or "")


def redact_uris_in(text):
    """``text`` with the password of every URI in it replaced by ``***``."""
    return _USERINFO_PASSWORD_IN_TEXT.sub(r"\1:***@", text)


def libvirt_error_detail(error):
    """libvirt's own message for an exception, without its redundant prefixes."""
    if libvirt is not None and isinstance(error, libvirt.libvirtError):
        return error.get_error_message() or str(error)
    return str(error)


@contextmanager
def libvirt_operation(uri, operation):
    """Turn a libvirtError raised inside the block into a LibvirtOperationError."""
    try:
        yield
    except libvirt.libvirtError as error:
        raise LibvirtOperationError(uri, operation, libvirt_error_detail(error), error.get_error_code()) from error


class _CredentialProvider:
    """Answers libvirt's credential requests (SASL, libssh2, ...) from the given options."""

    def __init__(self, username, password):
        self.username = username
        self.password = password
        self.missing = []

    def credential_types(self):
        return [libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_USERNAME, libvirt.VIR_CRED_ECHOPROMPT,
                libvirt.VIR_CRED_PASSPHRASE, libvirt.VIR_CRED_NOECHOPROMPT]

    def __call__(self, credentials, _opaque):
        for credential in credentials:
            kind = credential[0]
            if kind in (libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_USERNAME, libvirt.VIR_CRED_ECHOPROMPT):
                value, name = self.username, "username"
            else:
                value, name = self.password, "password"
            if value is None:
                self.missing.append("%s (libvirt asked: %s)" % (name, credential[1]))
                return -1
            credential[4] = value
        return 0


class _ConnectAttempt(threading.Thread):
    """Opens one connection in the background so the caller can stop waiting for it.

    When the caller gives up, the thread closes the connection should it still arrive.
    """

    def __init__(self, uri, auth, flags):
        super().__init__(name="libvirt-connect", daemon=True)
        self._uri = uri
        self._auth = auth
        self._flags = flags
        self._lock = threading.Lock()
        self._abandoned = False
        self.handle = None
        self.error = None

    def run(self):
        try:
            handle = libvirt.openAuth(self._uri, self._auth, self._flags)
        except libvirt.libvirtError as error:
            self.error = error
            return
        with self._lock:
            if self._abandoned:
                handle.close()
            else:
                self.handle = handle

    def abandon(self):
        with self._lock:
            self._abandoned = True
            if self.handle is not None:
                self.handle.close()
                self.handle = None


class LibvirtConnection:
    """One connection to one hypervisor; a context manager that always closes it."""

    def __init__(self, uri=DEFAULT_URI, username=None, password=None,
                 connect_timeout=DEFAULT_CONNECT_TIMEOUT, readonly=False):
        if libvirt is None:
            raise LibvirtOperationError(uri, "open a connection",
                                        "the Python package libvirt-python is not installed")
        if not uri:
            raise LibvirtOperationError("(no URI)", "open a connection", "a libvirt URI is required")
        if connect_timeout is None or connect_timeout <= 0:
            raise LibvirtOperationError(uri, "open a connection",
                                        "connect_timeout must be a positive number of seconds, got %r" % connect_timeout)
        self.uri = uri
        self.username = username
        self.password = password
        self.connect_timeout = float(connect_timeout)
        self.readonly = readonly
        self.handle = None

    @classmethod
    def from_params(cls, params, readonly=False):
        """Build from a module's or plugin's validated connection options."""
        return cls(params.get("uri") or DEFAULT_URI, params.get("username"), params.get("password"),
                   params.get("connect_timeout") or DEFAULT_CONNECT_TIMEOUT, readonly)

    def open(self):
        if self.handle is not None:
            return self.handle
        credentials = _CredentialProvider(self.username, self.password)
        auth = [credentials.credential_types(), credentials, None]
        flags = libvirt.VIR_CONNECT_RO if self.readonly else 0
        attempt = _ConnectAttempt(self.uri, auth, flags)
        attempt.start()
        attempt.join(self.connect_timeout)
        if attempt.is_alive():
            attempt.abandon()
            raise LibvirtOperationError(self.uri, "open a connection", timeout_reason(self.uri, self.connect_timeout))
        if attempt.error is not None:
            detail = libvirt_error_detail(attempt.error)
            if credentials.missing:
                detail = "%s; libvirt asked for a %s that was not given" % (detail, credentials.missing[0])
            raise LibvirtOperationError(self.uri, "open a connection", detail, attempt.error.get_error_code())
        self.handle = attempt.handle
        return self.handle

    def close(self):
        """Close the connection; safe to call twice, and never raises."""
        handle, self.handle = self.handle, None
        if handle is None:
            return
        try:
            handle.close()
        except libvirt.libvirtError:
            pass  # the peer is gone already: the connection is closed either way

    def operation(self, description):
        """Context manager: libvirt errors inside become LibvirtOperationError for this URI."""
        return libvirt_operation(self.uri, description)

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False


_EVENT_LOOP_LOCK = threading.Lock()
_EVENT_LOOP_THREAD = "libvirt-events"


def run_event_loop():
    """libvirt's default event loop in a daemon thread, once per process.

    Lifecycle callbacks, close callbacks, keepalive and non-blocking streams need it, and it
    must be registered before the connections that use them are opened. Every user in one
    process shares this one loop (a second would run libvirt's dispatch in two threads);
    the running thread is the mark, as this file may be loaded twice (the lab loads it by
    path, beside the installed collection).
    """
    with _EVENT_LOOP_LOCK:
        if any(thread.name == _EVENT_LOOP_THREAD for thread in threading.enumerate()):
            return
        libvirt.virEventRegisterDefaultImpl()

        def run():
            while True:
                libvirt.virEventRunDefaultImpl()
        threading.Thread(target=run, name=_EVENT_LOOP_THREAD, daemon=True).start()
