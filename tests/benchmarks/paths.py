"""Where the benchmark finds the collection, the lab package and its own working files.

Importing this module puts the repository (for ``lab``) and the collections path on
sys.path, the way tests/conftest.py does: ``KVMOPS_COLLECTIONS_PATH`` when set (``make``
points it at the collection installed from the built tarball), else the source tree
through the symlink ``.build/src/ansible_collections/kvmops/virt``.
"""

import importlib
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH_ROOT = REPO / ".build" / "bench"


def _collections_path():
    configured = os.environ.get("KVMOPS_COLLECTIONS_PATH")
    if configured:
        return Path(configured).resolve()
    root = REPO / ".build" / "src"
    link = root / "ansible_collections" / "kvmops" / "virt"
    if not link.is_symlink():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(REPO)
    return root


COLLECTIONS_PATH = _collections_path()
for _entry in (str(COLLECTIONS_PATH), str(REPO)):
    if _entry not in sys.path:
        sys.path.insert(0, _entry)


def collection_file(relative):
    """Path of a file of the kvmops.virt collection that ansible will load."""
    return COLLECTIONS_PATH / "ansible_collections" / "kvmops" / "virt" / relative


def import_collection_module(dotted):
    """``import_collection_module("plugins.module_utils.metadata")``: that module of kvmops.virt."""
    return importlib.import_module("ansible_collections.kvmops.virt." + dotted)
