"""Where ansible and Python find the kvmops.virt collection for the tests, the demo and the benchmarks.

``make`` builds the tarball and installs it into ``KVMOPS_COLLECTIONS_PATH``, so what runs is
exactly what ships. Without it (pytest or the demo run directly), the source tree is used
through the symlink ``.build/src/ansible_collections/kvmops/virt``.
"""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def collections_path():
    """The directory that holds ``ansible_collections/kvmops/virt``."""
    installed = os.environ.get("KVMOPS_COLLECTIONS_PATH")
    if installed and Path(installed).is_dir():
        return Path(installed).resolve()
    root = REPO / ".build" / "src"
    link = root / "ansible_collections" / "kvmops" / "virt"
    if not link.is_symlink():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(REPO)
    return root
