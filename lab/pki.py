"""Certificates for libvirt over TLS, made with openssl: a CA, server and client certificates.

libvirt's names for the files (its defaults under /etc/pki, and what ``?pkipath=`` wants):
``cacert.pem``, ``servercert.pem`` / ``serverkey.pem``, ``clientcert.pem`` / ``clientkey.pem``.
"""

import subprocess
from pathlib import Path

_DAYS = "3650"  # the lab's CA and certificates outlive any lab; nothing outside trusts them


def _openssl(*arguments, cwd):
    subprocess.run(["openssl", *arguments], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory, common_name="kvmops lab CA"):
    """cacert.pem and cakey.pem in directory (kept when they exist); returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / "cacert.pem").exists():
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "cakey.pem", "-out", "cacert.pem",
                 "-subj", f"/CN={common_name}", "-days", _DAYS, cwd=directory)
        (directory / "cakey.pem").chmod(0o600)
    return directory


def issue(ca_dir, cert_path, key_path, common_name, role, addresses=(), names=()):
    """A certificate signed by the CA in ca_dir, for a libvirt ``server`` or ``client``.

    A server certificate lists ``addresses`` (IP) and ``names`` (DNS) as subjectAltName: the
    names clients may use in their URI."""
    ca_dir, cert_path, key_path = Path(ca_dir), Path(cert_path), Path(key_path)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    usage = {"server": "serverAuth", "client": "clientAuth"}[role]
    alt_names = [f"IP:{address}" for address in addresses] + [f"DNS:{name}" for name in names]
    extensions = cert_path.with_suffix(".ext")
    extensions.write_text("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                          f"extendedKeyUsage={usage}\n"
                          + (f"subjectAltName={','.join(alt_names)}\n" if alt_names else ""))
    request = cert_path.with_suffix(".csr")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key_path), "-out", str(request),
             "-subj", f"/CN={common_name}", cwd=ca_dir)
    key_path.chmod(0o600)
    _openssl("x509", "-req", "-in", str(request), "-CA", "cacert.pem", "-CAkey", "cakey.pem", "-CAcreateserial",
             "-out", str(cert_path), "-days", _DAYS, "-extfile", str(extensions), cwd=ca_dir)
    request.unlink()
    extensions.unlink()
    return cert_path


def client_pkipath(ca_dir, directory, common_name):
    """A directory for ``?pkipath=``: the CA's certificate and a new client certificate."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cacert.pem").write_bytes((Path(ca_dir) / "cacert.pem").read_bytes())
    if not (directory / "clientcert.pem").exists():
        issue(ca_dir, directory / "clientcert.pem", directory / "clientkey.pem", common_name, "client")
    return directory
