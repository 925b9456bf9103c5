# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Sizes as people write them ("2 GiB", "512MiB", 2048) and as libvirt wants them.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

Units follow libvirt's own convention (virsh, domain XML): ``K``/``KiB``, ``M``/``MiB``,
``G``/``GiB``, ``T``/``TiB`` are powers of 1024, ``KB``/``MB``/``GB``/``TB`` powers of 1000,
``B``/``bytes`` single bytes. A bare number is in the option's default unit.
"""

from __future__ import annotations

import re

_UNITS = {
    "b": 1, "byte": 1, "bytes": 1,
    "k": 1024, "kib": 1024, "kb": 1000,
    "m": 1024 ** 2, "mib": 1024 ** 2, "mb": 1000 ** 2,
    "g": 1024 ** 3, "gib": 1024 ** 3, "gb": 1000 ** 3,
    "t": 1024 ** 4, "tib": 1024 ** 4, "tb": 1000 ** 4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_DISPLAY_UNITS = (("TiB", 1024 ** 4), ("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024))


class SizeError(ValueError):
    """A size that does not parse; str() says which option and what would be accepted."""


def parse_size(value, option, default_unit="MiB"):
    """Bytes for ``value``: an int in ``default_unit`` or a string with an optional unit."""
    if isinstance(value, bool):
        raise SizeError("%s: %r is not a size" % (option, value))
    if isinstance(value, int):
        number, unit = value, default_unit
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise SizeError("%s: %r is not a size; write a number of %s or a number with a unit, "
                            "such as '512 MiB' or '2 GiB'" % (option, value, default_unit))
        number = float(match.group(1)) if "." in match.group(1) else int(match.group(1))
        unit = match.group(2) or default_unit
    factor = _UNITS.get(unit.lower())
    if factor is None:
        raise SizeError("%s: unknown unit %r in %r; use one of KiB, MiB, GiB, TiB (or KB, MB, GB, TB, B)"
                        % (option, unit, value))
    size = int(number * factor)
    if size < 0:
        raise SizeError("%s: %r is negative" % (option, value))
    return size


def format_size(size_bytes):
    """The largest binary unit that shows ``size_bytes`` exactly, e.g. '2 GiB', '1536 MiB'."""
    if size_bytes is None:
        return None
    for name, factor in _DISPLAY_UNITS:
        if size_bytes >= factor and size_bytes % factor == 0:
            return "%d %s" % (size_bytes // factor, name)
    return "%d B" % size_bytes


def approximate_size(size_bytes):
    """A size rounded for a person to read: "17.9 GiB", "512 MiB", "0 B"."""
    for unit, factor in (("TiB", 1024 ** 4), ("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if size_bytes >= factor:
            value = size_bytes / factor
            return ("%.1f %s" % (value, unit)).replace(".0 ", " ")
    return "%d B" % size_bytes


def libvirt_size_bytes(element, default_unit="KiB"):
    """Bytes for a libvirt XML element such as <memory unit='KiB'>2097152</memory>.

    libvirt's default unit depends on the element: KiB for memory, bytes for capacity."""
    if element is None or element.text is None:
        return None
    unit = element.get("unit", default_unit)
    factor = _UNITS.get(unit.lower())
    if factor is None:
        raise SizeError("libvirt reported an unknown unit %r" % unit)
    return int(element.text.strip()) * factor
