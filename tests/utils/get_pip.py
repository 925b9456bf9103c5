# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stand-in for pypa's get-pip.py, which ansible-test downloads from a host outside the
package registries to put pip into its empty virtualenvs.

ansible-test runs it with pip-install arguments (pinned pip, setuptools, wheel) plus
get-pip's own --no-setuptools / --no-wheel. This installs the interpreter's bundled pip
with ensurepip, then lets that pip install the pinned packages from the package index.
"""

from __future__ import annotations

import subprocess
import sys

GET_PIP_ONLY_OPTIONS = ("--no-setuptools", "--no-wheel")


def main():
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
    arguments = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_OPTIONS]
    sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + arguments))


if __name__ == "__main__":
    main()
