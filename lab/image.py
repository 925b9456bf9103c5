"""Build the lab guest: a Debian cloud kernel and a busybox initramfs running loadd.

Only Debian packages are fetched (``apt-get download``); loadd is compiled here with gcc.
The result is cached in the lab's image directory and rebuilt only when its inputs change.
"""

import gzip
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from .hosts import LabError

GUEST_SOURCES = Path(__file__).resolve().parent / "guest"
_KERNEL_METAPACKAGE = "linux-image-cloud-amd64"
_BUSYBOX_APPLETS = ("sh", "mount", "mkdir", "cut", "cat", "echo")


def _run(args, cwd=None):
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LabError(f"building the guest image: {' '.join(args)} failed:\n{result.stderr.strip()}")
    return result.stdout


def kernel_package():
    """The versioned kernel package the cloud metapackage currently points at."""
    depends = _run(["apt-cache", "depends", _KERNEL_METAPACKAGE])
    for line in depends.splitlines():
        name = line.strip().removeprefix("Depends: ")
        if name.startswith("linux-image-6") or name.startswith("linux-image-7"):
            return name
    raise LabError(f"apt knows no kernel behind {_KERNEL_METAPACKAGE}: run 'apt-get update' first")


def _build_id(kernel):
    digest = hashlib.sha256(kernel.encode())
    for source in sorted(GUEST_SOURCES.iterdir()):
        digest.update(source.name.encode() + source.read_bytes())
    return digest.hexdigest()


def ensure_image(layout):
    """Return (vmlinuz, initrd) paths, building them when missing or out of date."""
    image = layout.image_dir
    vmlinuz, initrd, stamp = image / "vmlinuz", image / "initrd.gz", image / "BUILD_ID"
    kernel = kernel_package()
    build_id = _build_id(kernel)
    if vmlinuz.exists() and initrd.exists() and stamp.exists() and stamp.read_text() == build_id:
        return vmlinuz, initrd
    image.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=image) as work_dir:
        work = Path(work_dir)
        work.chmod(0o755)  # apt-get download drops privileges to _apt for the fetch
        _run(["apt-get", "download", "-q", kernel, "busybox-static"], cwd=work)
        for deb in work.glob("*.deb"):
            _run(["dpkg-deb", "-x", str(deb), str(work / "root")])
        extracted = work / "root"
        rootfs = work / "rootfs"
        for sub in ("bin", "proc", "sys", "dev", "tmp"):
            (rootfs / sub).mkdir(parents=True)
        busybox = extracted / "bin" / "busybox"
        shutil.copy2(busybox, rootfs / "bin" / "busybox")
        for applet in _BUSYBOX_APPLETS:
            (rootfs / "bin" / applet).symlink_to("busybox")
        _run(["gcc", "-O2", "-static", "-pthread", "-Wall", "-Wextra", "-Werror",
              "-o", str(rootfs / "bin" / "loadd"), str(GUEST_SOURCES / "loadd.c")])
        shutil.copy2(GUEST_SOURCES / "init", rootfs / "init")
        (rootfs / "init").chmod(0o755)
        files = subprocess.run(["find", "."], cwd=rootfs, capture_output=True, check=True).stdout
        archive = subprocess.run([str(busybox), "cpio", "-o", "-H", "newc"], cwd=rootfs, input=files,
                                 capture_output=True, check=True).stdout
        with gzip.open(work / "initrd.gz", "wb", compresslevel=1) as out:
            out.write(archive)
        kernels = sorted((extracted / "boot").glob("vmlinuz-*"))
        if not kernels:
            raise LabError(f"{kernel} holds no /boot/vmlinuz-*")
        shutil.move(str(kernels[0]), vmlinuz)
        shutil.move(str(work / "initrd.gz"), initrd)
    stamp.write_text(build_id)
    return vmlinuz, initrd
