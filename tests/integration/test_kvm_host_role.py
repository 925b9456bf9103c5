"""The kvm_host role for real where this machine allows it.

- TLS, the default: the role configures a fourth lab hypervisor's libvirtd (its own
  configuration directory, certificates made here with openssl), the daemon is restarted on
  that configuration, and a client with its own certificate reaches it over qemu+tls while
  plain TCP is refused. A second run changes nothing; the pool it defines is there.
- Check mode on this machine itself (Debian 12): the packages are looked up with apt and
  /etc/libvirt is left exactly as it was.

Not tested here: the systemd sockets and the restart handler (no systemd on this machine:
kvm_host_manage_service is false in these runs) and the RHEL package names.
"""

import hashlib
import json
import subprocess
import time
from pathlib import Path

import pytest

from ansible_collections.kvmops.virt.plugins.module_utils.connection import LibvirtConnection, LibvirtOperationError
from lab import pki
from lab.hosts import LabHost
from lab_helpers import SPARE_HOST, spare_host
from playbook_runner import TEST_PLAYBOOKS, playbook_command, run_playbook


class RoleConfiguredHost(LabHost):
    """A lab hypervisor that starts on the configuration the role left (the lab writes its
    own only the first time), and counts as started once ``answer_uri`` answers."""

    answer_uri = None

    def write_config(self):
        if (self.dir / "etc" / "libvirtd.conf").exists():
            self._make_dirs()
            return
        super().write_config()

    def _wait_until_answering(self, timeout):
        if self.answer_uri is None:
            super()._wait_until_answering(timeout)
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                LibvirtConnection(self.answer_uri, connect_timeout=5).open().close()
                return
            except LibvirtOperationError:
                if time.monotonic() > deadline or not self.is_running():
                    raise
                time.sleep(0.2)


def make_certificates(directory, address):
    """A CA, a server certificate for ``address`` and a client certificate, as files."""
    ca = pki.make_ca(directory, "kvmops test CA")
    pki.issue(ca, directory / "servercert.pem", directory / "serverkey.pem", address, "server", addresses=[address])
    return pki.client_pkipath(ca, directory / "client", "kvmops-controller")


@pytest.fixture
def fourth_host(lab):
    with spare_host(RoleConfiguredHost(lab.host(SPARE_HOST).spec, lab.layout)) as host:
        yield host


def role(ansible_env, lab, options=(), **variables):
    return run_playbook(ansible_env, lab, TEST_PLAYBOOKS / "kvm_host.yml", json.dumps(variables), options=options)


def test_tls_by_default_on_a_real_libvirtd(lab, ansible_env, fourth_host, tmp_path, figures):
    spec = fourth_host.spec
    # /tmp is the same path inside the lab host's mount namespace: libvirtd reads the files there
    pki = tmp_path / "pki"
    client = make_certificates(pki, spec.address)
    first, last = spec.migration_ports
    variables = dict(
        kvm_host_install_packages=False, kvm_host_manage_service=False, kvm_host_config_dir=str(fourth_host.dir / "etc"),
        kvm_host_listen_address=spec.address, kvm_host_tls_ca_cert=str(pki / "cacert.pem"),
        kvm_host_tls_server_cert=str(pki / "servercert.pem"), kvm_host_tls_server_key=str(pki / "serverkey.pem"),
        kvm_host_tls_ca_file=str(tmp_path / "installed" / "CA" / "cacert.pem"),
        kvm_host_tls_cert_file=str(tmp_path / "installed" / "libvirt" / "servercert.pem"),
        kvm_host_tls_key_file=str(tmp_path / "installed" / "libvirt" / "private" / "serverkey.pem"),
        kvm_host_migration_address=spec.address, kvm_host_migration_port_min=first, kvm_host_migration_port_max=last,
        kvm_host_pool=dict(name="role-pool", type="dir", path=str(tmp_path / "pool")),
        # still the lab's TCP listener: the new configuration takes effect at the restart below
        kvm_host_check_uri=spec.uri)
    (tmp_path / "pool").mkdir()
    recap, seconds = role(ansible_env, lab, **variables)
    assert recap["localhost"]["failed"] == 0 and recap["localhost"]["changed"] > 0
    conf = (fourth_host.dir / "etc" / "libvirtd.conf").read_text()
    for line in ("listen_tls = 1", "listen_tcp = 0", f'listen_addr = "{spec.address}"',
                 f'key_file = "{variables["kvm_host_tls_key_file"]}"'):
        assert line in conf.splitlines(), conf
    assert oct(Path(variables["kvm_host_tls_key_file"]).stat().st_mode & 0o777) == "0o600"

    tls_uri = f"qemu+tls://{spec.address}/system?pkipath={client}"
    fourth_host.stop()
    fourth_host.answer_uri = tls_uri
    fourth_host.start()
    with LibvirtConnection(tls_uri, connect_timeout=10) as conn:
        assert conn.handle.getHostname()
        assert conn.handle.storagePoolLookupByName("role-pool").isActive()
    with pytest.raises(LibvirtOperationError):
        LibvirtConnection(spec.uri, connect_timeout=5).open()  # plain TCP is off now

    variables["kvm_host_check_uri"] = tls_uri
    again, _seconds = role(ansible_env, lab, **variables)
    assert again["localhost"]["failed"] == 0 and again["localhost"]["changed"] == 0, again
    figures("kvm_host role: TLS on a real libvirtd", f"first run {seconds:.1f} s; reached over qemu+tls with a client "
            "certificate, plain TCP refused; second run changed nothing")


def tree_digest(path):
    digest = hashlib.sha256()
    for item in sorted(Path(path).rglob("*")):
        if item.is_file():
            digest.update(str(item).encode() + item.read_bytes())
    return digest.hexdigest()


def test_check_mode_on_this_machine_changes_nothing(lab, ansible_env, tmp_path):
    before = tree_digest("/etc/libvirt")
    recap, _seconds = role(ansible_env, lab, options=("--check", "--diff"), kvm_host_manage_service=False,
                           kvm_host_listen="tcp", kvm_host_pool={}, kvm_host_check_uri=lab.host("kvm1").spec.uri)
    assert recap["localhost"]["failed"] == 0, recap
    assert tree_digest("/etc/libvirt") == before


def test_the_tls_key_never_reaches_the_output(lab, ansible_env, tmp_path):
    """Check mode with --diff -vvv, as an AWX job with diff mode on shows it: the
    certificates may appear, the server key's PEM must not."""
    pki_dir = tmp_path / "pki"
    make_certificates(pki_dir, "127.0.0.9")
    key_body = (pki_dir / "serverkey.pem").read_text().splitlines()[1]  # a line of the key's base64
    installed = tmp_path / "installed"
    variables = dict(
        kvm_host_install_packages=False, kvm_host_manage_service=False, kvm_host_config_dir=str(tmp_path / "etc"),
        kvm_host_tls_ca_cert=str(pki_dir / "cacert.pem"), kvm_host_tls_server_cert=str(pki_dir / "servercert.pem"),
        kvm_host_tls_server_key=str(pki_dir / "serverkey.pem"),
        kvm_host_tls_ca_file=str(installed / "cacert.pem"), kvm_host_tls_cert_file=str(installed / "servercert.pem"),
        kvm_host_tls_key_file=str(installed / "private" / "serverkey.pem"),
        kvm_host_pool={}, kvm_host_check_uri=lab.host("kvm1").spec.uri)
    (tmp_path / "etc").mkdir()
    command = playbook_command(lab, TEST_PLAYBOOKS / "kvm_host.yml", [json.dumps(variables)],
                               options=("--check", "--diff", "-vvv"))
    done = subprocess.run(command, env=ansible_env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "BEGIN CERTIFICATE" in done.stdout  # the diff is there, for what may be shown
    assert key_body not in done.stdout + done.stderr
