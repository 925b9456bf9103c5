"""Where ansible and Python find the kvmops.virt collection for the tests, the demo and the benchmarks.

``make`` builds the tarball and installs it into ``KVMOPS_COLLECTIONS_PATH``, so what runs is
exactly what ships. Without it (pytest or the demo run directly), the source tree is used
through the symlink ``.build/src/ansible_collections/kvmops/virt``.
"""

import os
import sys
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


def ansible_environment(base, collections_paths, **settings):
    """``base`` (a mapping of environment variables) for running this virtualenv's ansible
    commands against ``collections_paths`` only: no collections from sys.path, no colours,
    no interpreter discovery or localhost warnings; ``settings`` are more variables."""
    env = dict(base)
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        ANSIBLE_COLLECTIONS_PATH=os.pathsep.join(str(path) for path in collections_paths),
        ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        **settings,
    )
    return env
