"""Where the benchmark finds the collection, the lab package and its own working files.

Importing this module puts the repository (for ``lab``) and the collections path on
sys.path, the way tests/conftest.py does: ``KVMOPS_COLLECTIONS_PATH`` when set (``make``
points it at the collection installed from the built tarball), else the source tree
through the symlink ``.build/src/ansible_collections/kvmops/virt``.
"""

import importlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH_ROOT = REPO / ".build" / "bench"


if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lab.collection import collections_path  # noqa: E402  (needs sys.path above)

COLLECTIONS_PATH = collections_path()
if str(COLLECTIONS_PATH) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS_PATH))


def collection_file(relative):
    """Path of a file of the kvmops.virt collection that ansible will load."""
    return COLLECTIONS_PATH / "ansible_collections" / "kvmops" / "virt" / relative


def import_collection_module(dotted):
    """``import_collection_module("plugins.module_utils.metadata")``: that module of kvmops.virt."""
    return importlib.import_module("ansible_collections.kvmops.virt." + dotted)
