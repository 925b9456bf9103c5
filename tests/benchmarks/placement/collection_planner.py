"""The planner as the benchmarks use it: from the collection ``make`` installed (the built tarball)
when KVMOPS_COLLECTIONS_PATH says so, else from the source tree (lab/collection.py decides)."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

from lab.collection import collections_path  # noqa: E402  pylint: disable=wrong-import-position

sys.path.insert(0, str(collections_path()))

from ansible_collections.kvmops.virt.plugins.module_utils.placement.planner import plan  # noqa: E402,F401  pylint: disable=wrong-import-position,import-error,unused-import
