"""The connection layer against libvirt's test driver and real sockets on loopback."""

import time

import libvirt
import pytest

from ansible_collections.kvmops.virt.plugins.module_utils.connection import (
    LibvirtConnection,
    LibvirtOperationError,
    _CredentialProvider,
    redact_uri,
    timeout_reason,
)

NODE_XML = """<node>
  <domain type='test'>
    <name>web1</name>
    <uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid>
    <memory>262144</memory>
    <vcpu>1</vcpu>
    <os><type>hvm</type></os>
  </domain>
</node>
"""


@pytest.fixture
def node_uri(tmp_path):
    node = tmp_path / "node.xml"
    node.write_text(NODE_XML)
    return f"test://{node}"


def test_opens_and_closes_on_exit(node_uri):
    with LibvirtConnection(node_uri) as conn:
        handle = conn.handle
        assert [dom.name() for dom in handle.listAllDomains()] == ["web1"]
    assert conn.handle is None
    with pytest.raises(libvirt.libvirtError):
        handle.getHostname()  # the handle really is closed


def test_close_twice_and_close_unopened_are_harmless(node_uri):
    conn = LibvirtConnection(node_uri)
    conn.close()
    conn.open()
    conn.close()
    conn.close()


def test_closes_when_the_block_raises(node_uri):
    with pytest.raises(RuntimeError):
        with LibvirtConnection(node_uri) as conn:
            raise RuntimeError("boom")
    assert conn.handle is None


def test_operation_error_names_uri_operation_and_libvirt_reason(node_uri):
    with LibvirtConnection(node_uri) as conn:
        with pytest.raises(LibvirtOperationError) as caught:
            with conn.operation("look up guest db9"):
                conn.handle.lookupByName("db9")
    error = caught.value
    assert error.code == libvirt.VIR_ERR_NO_DOMAIN
    assert str(error) == f"Could not look up guest db9 on {node_uri}: Domain not found"


def test_unknown_driver_fails_with_libvirts_reason():
    with pytest.raises(LibvirtOperationError) as caught:
        LibvirtConnection("nosuchdriver:///system").open()
    message = str(caught.value)
    assert message.startswith("Could not open a connection on nosuchdriver:///system: ")
    assert len(message) > len("Could not open a connection on nosuchdriver:///system: ") + 5


def test_missing_node_file_fails_clearly(tmp_path):
    uri = f"test://{tmp_path}/absent.xml"
    with pytest.raises(LibvirtOperationError) as caught:
        LibvirtConnection(uri).open()
    assert uri in str(caught.value)


def test_refused_port_fails_at_once_with_the_reason(closed_port):
    uri = f"qemu+tcp://127.0.0.1:{closed_port}/system"
    started = time.monotonic()
    with pytest.raises(LibvirtOperationError) as caught:
        LibvirtConnection(uri, connect_timeout=10).open()
    assert time.monotonic() - started < 3
    assert uri in str(caught.value)
    assert "refused" in str(caught.value).lower()


def test_silent_peer_is_bounded_by_connect_timeout(silent_listener, figures):
    uri = f"qemu+tcp://127.0.0.1:{silent_listener}/system"
    started = time.monotonic()
    with pytest.raises(LibvirtOperationError) as caught:
        LibvirtConnection(uri, connect_timeout=1.5).open()
    elapsed = time.monotonic() - started
    figures("connect to a silent peer, connect_timeout=1.5", f"failed after {elapsed:.2f} s")
    assert 1.4 < elapsed < 3
    assert str(caught.value) == (
        f"Could not open a connection on {uri}: no answer within 1.5 seconds (connect_timeout); "
        "is the host reachable and libvirtd listening there?")


@pytest.mark.parametrize("timeout", [0, -1, None])
def test_connect_timeout_must_be_positive(timeout):
    with pytest.raises(LibvirtOperationError, match="connect_timeout must be a positive number"):
        LibvirtConnection("test:///default", connect_timeout=timeout)


def test_empty_uri_is_refused():
    with pytest.raises(LibvirtOperationError, match="a libvirt URI is required"):
        LibvirtConnection("")


def test_readonly_connection_cannot_change_anything(node_uri):
    with LibvirtConnection(node_uri, readonly=True) as conn:
        with pytest.raises(LibvirtOperationError) as caught:
            with conn.operation("stop guest web1"):
                conn.handle.lookupByName("web1").destroy()
    assert caught.value.code == libvirt.VIR_ERR_OPERATION_DENIED


def test_from_params_uses_defaults_for_missing_options():
    conn = LibvirtConnection.from_params({"uri": None, "username": None, "password": None, "connect_timeout": None})
    assert (conn.uri, conn.connect_timeout) == ("qemu:///system", 10.0)


@pytest.mark.parametrize("uri, shown", [
    ("qemu+tcp://bob:s3cret@kvm1/system", "qemu+tcp://bob:***@kvm1/system"),
    ("qemu+ssh://root@kvm1/system", "qemu+ssh://root@kvm1/system"),
    ("qemu:///system", "qemu:///system"),
])
def test_passwords_in_uris_are_masked(uri, shown):
    assert redact_uri(uri) == shown
    assert "s3cret" not in str(LibvirtOperationError(uri, "open a connection", "refused"))


def test_credentials_answer_libvirts_questions():
    provider = _CredentialProvider("alice", "s3cret")
    asked = [[libvirt.VIR_CRED_AUTHNAME, "user:", None, None, None],
             [libvirt.VIR_CRED_PASSPHRASE, "pass:", None, None, None]]
    assert provider(asked, None) == 0
    assert [cred[4] for cred in asked] == ["alice", "s3cret"]


def test_a_missing_credential_is_named():
    provider = _CredentialProvider("alice", None)
    asked = [[libvirt.VIR_CRED_NOECHOPROMPT, "Password:", None, None, None]]
    assert provider(asked, None) == -1
    assert provider.missing == ["password (libvirt asked: Password:)"]


@pytest.mark.parametrize("uri, where", [
    ("qemu+ssh://root@kvm1/system", "does sshd answer on its port (22 unless the URI names one)?"),
    ("qemu+tls://kvm1/system", "libvirtd listening with TLS (port 16514 unless the URI names one)?"),
    ("qemu://kvm1/system", "libvirtd listening with TLS (port 16514 unless the URI names one)?"),
    ("qemu+tcp://kvm1/system", "is the host reachable and libvirtd listening there?"),
    ("qemu:///system", "is the host reachable and libvirtd listening there?"),
])
def test_a_timeout_says_where_to_look_by_transport(uri, where):
    assert timeout_reason(uri, 3).endswith(where)


@pytest.mark.parametrize("detail, advice", [
    ("Cannot recv data: No ED25519 host key is known for kvm1 and you have requested strict checking.\n"
     "Host key verification failed.: Connection reset by peer",
     "the ssh host key of kvm1 is not in the known_hosts of the user that connects"),
    ("Cannot recv data: admin@kvm1: Permission denied (publickey).: Connection reset by peer",
     "add the connecting user's public key to ~admin/.ssh/authorized_keys on kvm1"),
    ("Certificate failed validation: Certificate's owner does not match the hostname 'kvm1'",
     "libvirtd's server certificate on kvm1 is not issued for the name in the URI"),
    ("Cannot read CA certificate '/etc/pki/CA/cacert.pem': No such file or directory",
     "or add ?pkipath=DIR (a directory with all three) to the URI"),
])
def test_the_first_ssh_and_tls_failures_say_what_to_do(detail, advice):
    error = LibvirtOperationError("qemu+ssh://admin@kvm1/system", "open a connection", detail)
    assert advice in error.advice
    assert str(error).startswith("Could not open a connection on qemu+ssh://admin@kvm1/system: " + detail.rstrip(". "))
    assert str(error).endswith(error.advice) and ". What to do: " in str(error)


def test_a_p2p_failure_points_at_the_source_hypervisor():
    detail = ("operation failed: Failed to connect to remote libvirt URI qemu+ssh://root@kvm2/system: Cannot recv "
              "data: Host key verification failed.: Connection reset by peer")
    advice = LibvirtOperationError("qemu+ssh://root@kvm1/system", "migrate guest web-1", detail).advice
    assert advice.startswith("the ssh host key of the destination (kvm2) is not in the known_hosts")
    assert "the source hypervisor's libvirtd dials the destination itself (p2p)" in advice
    assert "transport=direct" in advice
    assert LibvirtOperationError("qemu:///system", "list guests", "no such domain").advice is None
