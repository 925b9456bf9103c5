"""Build the lab guest: a Debian cloud kernel and a busybox initramfs running loadd.

Only Debian packages are fetched (``apt-get download``); loadd (the load generator) and
agentd (a guest agent for guests defined with the agent's channel) are compiled here with gcc.
The result is cached in the lab's image directory and rebuilt only when its inputs change.

The initramfs carries the few kernel modules a guest needs to see the devices tests give
it (virtio disks and balloon, SCSI and IDE CD-ROMs with ISO 9660) and its ACPI power
button (button, evdev), with their dependencies and nothing else, plus the modules.dep
and modules.alias busybox modprobe needs to load a device's driver by the device's
modalias, as the guest's init does. busybox acpid, with the files it reads from
``lab/guest``, powers the guest off when the power button is pressed.
"""

import gzip
import hashlib
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

from .hosts import LabError

GUEST_SOURCES = Path(__file__).resolve().parent / "guest"
_KERNEL_METAPACKAGE = "linux-image-cloud-amd64"
_BUSYBOX_APPLETS = ("sh", "mount", "umount", "mkdir", "cut", "cat", "echo", "modprobe", "head", "tr",
                    "sha256sum", "ls", "sleep", "dd", "grep", "acpid", "poweroff")
# Drivers for the devices tests give a lab guest: virtio disks, SCSI and balloon, CD-ROMs
# with ISO 9660 on virtio-scsi or (machine type 'pc') IDE. The cloud kernel has no AHCI
# driver, so SATA disks and CD-ROMs stay invisible to the guest.
# The ACPI power button (libvirt's shutdown) reaches busybox acpid as a key press: button
# makes the button an input device, evdev gives input devices their /dev/input/event*.
# virtio_console carries the guest agent's port (agentd) for guests defined with its channel.
GUEST_DRIVERS = ("virtio_pci", "virtio_blk", "virtio_scsi", "virtio_balloon", "virtio_console", "sd_mod", "sr_mod",
                 "isofs", "ata_piix", "button", "evdev")
# What acpid reads (lab/guest/acpi.map, acpid.conf) and runs (power-button), by path in the guest.
_ACPI_FILES = {"acpi.map": "etc/acpi.map", "acpid.conf": "etc/acpid.conf", "power-button": "etc/acpi/power-button"}


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
        if name.startswith(("linux-image-6", "linux-image-7")):
            return name
    raise LabError(f"apt knows no kernel behind {_KERNEL_METAPACKAGE}: run 'apt-get update' first")


def _build_id(kernel):
    digest = hashlib.sha256(kernel.encode())
    digest.update(Path(__file__).read_bytes())  # the module list and applets live here
    for source in sorted(GUEST_SOURCES.iterdir()):
        digest.update(source.name.encode() + source.read_bytes())
    return digest.hexdigest()


def module_info(path):
    """The ``.modinfo`` fields of a kernel module (an ELF64 object): name -> list of values."""
    data = path.read_bytes()
    if data[:5] != b"\x7fELF\x02":
        raise LabError(f"{path} is not an ELF64 kernel module")
    section_table, = struct.unpack_from("<Q", data, 0x28)
    entry_size, count, names_index = struct.unpack_from("<HHH", data, 0x3A)

    def section(index):
        header = section_table + index * entry_size
        name, _type, _flags, _address, offset, size = struct.unpack_from("<IIQQQQ", data, header)
        return name, offset, size

    _name, names_offset, _size = section(names_index)
    for index in range(count):
        name, offset, size = section(index)
        if data[names_offset + name:data.index(b"\x00", names_offset + name)] == b".modinfo":
            info = {}
            for field in data[offset:offset + size].split(b"\x00"):
                key, equals, value = field.decode().partition("=")
                if equals:
                    info.setdefault(key, []).append(value)
            return info
    raise LabError(f"{path} has no .modinfo section")


def _module_name(path):
    return path.name.removesuffix(".ko").replace("-", "_")


def install_modules(modules_dir, target_dir, drivers=GUEST_DRIVERS):
    """Copy ``drivers`` and their dependencies from a kernel's /lib/modules/<version>.

    Writes modules.dep (full dependency lists, loaded from the end, as kmod and busybox
    modprobe expect) and modules.alias for the copied modules, so that modprobe finds a
    device's driver by the device's modalias. Drivers built into the kernel are skipped.
    Returns the names of the modules copied.
    """
    files = {_module_name(path): path for path in modules_dir.rglob("*.ko")}
    builtin = {_module_name(Path(line)) for line in (modules_dir / "modules.builtin").read_text().split()}
    wanted = [driver for driver in drivers if driver not in builtin]
    missing = [driver for driver in wanted if driver not in files]
    if missing:
        raise LabError(f"the guest kernel has no driver {', '.join(missing)} (neither a module nor built in)")
    depends, aliases = {}, []

    def visit(name, chain):
        if name in depends:
            return
        if name not in files:
            raise LabError(f"kernel module {' -> '.join(chain + [name])}: {name}.ko is missing")
        info = module_info(files[name])
        depends[name] = [dep for dep in ",".join(info.get("depends", [])).split(",") if dep]
        aliases.extend(f"alias {alias} {name}\n" for alias in info.get("alias", []))
        for dep in depends[name]:
            visit(dep, chain + [name])

    for driver in wanted:
        visit(driver, [])
    lines = []
    for name in sorted(depends):
        relative = files[name].relative_to(modules_dir)
        (target_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(files[name], target_dir / relative)
        load_order = _load_order(name, depends)[:-1]
        deps = " ".join(str(files[dep].relative_to(modules_dir)) for dep in reversed(load_order))
        lines.append(f"{relative}: {deps}".rstrip())
    (target_dir / "modules.dep").write_text("\n".join(lines) + "\n")
    (target_dir / "modules.alias").write_text("".join(sorted(aliases)))
    shutil.copy2(modules_dir / "modules.builtin", target_dir / "modules.builtin")
    return sorted(depends)


def _load_order(name, depends):
    """``name`` and everything it needs, each after its own dependencies."""
    order = []

    def visit(module):
        if module in order:
            return
        for dep in sorted(depends[module]):
            visit(dep)
        order.append(module)

    visit(name)
    return order


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
        for sub in ("bin", "proc", "sys", "dev", "tmp", "etc/acpi"):
            (rootfs / sub).mkdir(parents=True)
        busybox = extracted / "bin" / "busybox"
        shutil.copy2(busybox, rootfs / "bin" / "busybox")
        for applet in _BUSYBOX_APPLETS:
            (rootfs / "bin" / applet).symlink_to("busybox")
        kernels = sorted((extracted / "boot").glob("vmlinuz-*"))
        if not kernels:
            raise LabError(f"{kernel} holds no /boot/vmlinuz-*")
        version = kernels[0].name.removeprefix("vmlinuz-")
        modules_dir = Path("lib") / "modules" / version
        install_modules(extracted / modules_dir, rootfs / modules_dir)
        for program in ("loadd", "agentd"):
            _run(["gcc", "-O2", "-static", "-pthread", "-Wall", "-Wextra", "-Werror",
                  "-o", str(rootfs / "bin" / program), str(GUEST_SOURCES / f"{program}.c")])
        shutil.copy2(GUEST_SOURCES / "init", rootfs / "init")
        (rootfs / "init").chmod(0o755)
        for source, target in _ACPI_FILES.items():
            shutil.copy2(GUEST_SOURCES / source, rootfs / target)
        (rootfs / _ACPI_FILES["power-button"]).chmod(0o755)
        files = subprocess.run(["find", "."], cwd=rootfs, capture_output=True, check=True).stdout
        archive = subprocess.run([str(busybox), "cpio", "-o", "-H", "newc"], cwd=rootfs, input=files,
                                 capture_output=True, check=True).stdout
        with gzip.open(work / "initrd.gz", "wb", compresslevel=1) as out:
            out.write(archive)
        shutil.move(str(kernels[0]), vmlinuz)
        shutil.move(str(work / "initrd.gz"), initrd)
    stamp.write_text(build_id)
    return vmlinuz, initrd
