# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Put get_pip.py where ansible-test looks for its cached pip bootstrap script.

Run with the Python that has ansible-test installed. ansible-test names the cache file
after the pip version it pins, so that version is read from ansible-test itself.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import sys

import ansible_test


def pinned_pip_version():
    source = pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
    match = re.search(r"pip='([0-9.]+)'", source.read_text())
    if not match:
        sys.exit("cannot find the pip version ansible-test pins in %s" % source)
    return match.group(1)


def main():
    version = pinned_pip_version()
    cache = pathlib.Path("~/.ansible/test/cache").expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / ("get_pip_%s.py" % version.replace(".", "_"))
    shutil.copyfile(pathlib.Path(__file__).with_name("get_pip.py"), target)
    print("ansible-test pip %s bootstrap: %s" % (version, target))


if __name__ == "__main__":
    main()
