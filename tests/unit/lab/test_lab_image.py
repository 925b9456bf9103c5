"""The guest image's kernel modules: what is copied, and the modules.dep / modules.alias written.

The modules here are real ELF objects made by gcc, with a ``.modinfo`` section like the
kernel's; the lab integration tests boot the image built from Debian's kernel package.
"""

import shutil
import subprocess

import pytest

from lab.hosts import LabError
from lab.image import install_modules, module_info

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc builds the test modules (and loadd)")


def make_module(modules_dir, relative, **fields):
    """An ELF object at modules_dir/relative whose .modinfo holds ``fields`` (lists repeat a key)."""
    entries = []
    for key, values in fields.items():
        for value in values if isinstance(values, list) else [values]:
            entries.append(f"{key}={value}")
    source = "".join(
        f'static const char field{index}[] __attribute__((section(".modinfo"), used)) = "{entry}";\n'
        for index, entry in enumerate(entries))
    source += "int init_module(void) { return 0; }\n"
    target = modules_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    c_file = target.with_suffix(".c")
    c_file.write_text(source)
    subprocess.run(["gcc", "-c", "-o", str(target), str(c_file)], check=True)
    c_file.unlink()
    return target


@pytest.fixture
def kernel_modules(tmp_path):
    modules = tmp_path / "lib" / "modules" / "6.1.0-test"
    make_module(modules, "kernel/drivers/virtio/virtio_ring.ko", depends="", name="virtio_ring")
    make_module(modules, "kernel/drivers/virtio/virtio.ko", depends="virtio_ring", name="virtio")
    make_module(modules, "kernel/drivers/virtio/virtio_pci.ko", depends="virtio_ring,virtio", name="virtio_pci",
                alias=["pci:v00001AF4d*sv*sd*bc*sc*i*"])
    make_module(modules, "kernel/drivers/block/virtio_blk.ko", depends="virtio,virtio_ring", name="virtio_blk",
                alias=["virtio:d00000002v*"])
    make_module(modules, "kernel/drivers/net/virtio_net.ko", depends="virtio,virtio_ring", name="virtio_net",
                alias=["virtio:d00000001v*"])
    make_module(modules, "kernel/drivers/ata/pata-legacy.ko", depends="", name="pata_legacy")
    (modules / "modules.builtin").write_text("kernel/fs/ext4/ext4.ko\n")
    return modules


def test_module_info_reads_every_field_of_the_modinfo_section(kernel_modules):
    info = module_info(kernel_modules / "kernel/drivers/virtio/virtio_pci.ko")
    assert info["depends"] == ["virtio_ring,virtio"]
    assert info["alias"] == ["pci:v00001AF4d*sv*sd*bc*sc*i*"]
    assert info["name"] == ["virtio_pci"]


def test_module_info_refuses_what_is_not_an_elf64_object(tmp_path):
    bogus = tmp_path / "bogus.ko"
    bogus.write_bytes(b"#!/bin/sh\n")
    with pytest.raises(LabError, match="bogus.ko is not an ELF64 kernel module"):
        module_info(bogus)


def test_only_the_drivers_and_their_dependencies_are_copied(kernel_modules, tmp_path):
    target = tmp_path / "initramfs" / "lib" / "modules" / "6.1.0-test"
    copied = install_modules(kernel_modules, target, drivers=("virtio_blk", "virtio_pci", "ext4"))
    assert copied == ["virtio", "virtio_blk", "virtio_pci", "virtio_ring"]
    assert sorted(path.name for path in target.rglob("*.ko")) == [
        "virtio.ko", "virtio_blk.ko", "virtio_pci.ko", "virtio_ring.ko"]


def test_modules_dep_lists_every_dependency_loaded_from_the_end(kernel_modules, tmp_path):
    target = tmp_path / "initramfs"
    install_modules(kernel_modules, target, drivers=("virtio_pci", "virtio_blk"))
    lines = dict(line.split(":", 1) for line in (target / "modules.dep").read_text().splitlines())
    # modprobe loads the last entry first: virtio_ring, then virtio
    assert lines["kernel/drivers/virtio/virtio_pci.ko"].split() == [
        "kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_ring.ko"]
    assert lines["kernel/drivers/virtio/virtio_ring.ko"].strip() == ""


def test_modules_alias_maps_modaliases_to_the_copied_modules_only(kernel_modules, tmp_path):
    target = tmp_path / "initramfs"
    install_modules(kernel_modules, target, drivers=("virtio_pci", "virtio_blk"))
    assert (target / "modules.alias").read_text() == (
        "alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\n"
        "alias virtio:d00000002v* virtio_blk\n")


def test_module_names_use_underscores_like_modprobe(kernel_modules, tmp_path):
    assert install_modules(kernel_modules, tmp_path / "initramfs", drivers=("pata_legacy",)) == ["pata_legacy"]


def test_a_driver_the_kernel_lacks_is_named(kernel_modules, tmp_path):
    with pytest.raises(LabError, match="the guest kernel has no driver ahci, sr_mod"):
        install_modules(kernel_modules, tmp_path / "initramfs", drivers=("virtio_blk", "ahci", "sr_mod"))


def test_a_missing_dependency_is_named_with_its_chain(kernel_modules, tmp_path):
    make_module(kernel_modules, "kernel/drivers/scsi/sr_mod.ko", depends="cdrom", name="sr_mod")
    with pytest.raises(LabError, match="kernel module sr_mod -> cdrom: cdrom.ko is missing"):
        install_modules(kernel_modules, tmp_path / "initramfs", drivers=("sr_mod",))
