# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The collection's own part of a guest's libvirt ``<metadata>``: tags and the last migration.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

In the domain XML it looks like this::

    <metadata>
      <kvmops:guest xmlns:kvmops="https://github.com/kvmops/kvmops.virt/1">
        <kvmops:tag name="role">web</kvmops:tag>
        <kvmops:tag name="migratable" type="bool">false</kvmops:tag>
        <kvmops:migrated at="1763730000" from="kvm1" to="kvm2"/>
      </kvmops:guest>
    </metadata>

libvirt stores one element per namespace, so whoever writes tags must keep the other
children of ``kvmops:guest`` (written by other parts of the collection) as they were.
"""

from __future__ import annotations

import copy
import re
from xml.etree import ElementTree

METADATA_NAMESPACE = "https://github.com/kvmops/kvmops.virt/1"
METADATA_PREFIX = "kvmops"
ElementTree.register_namespace(METADATA_PREFIX, METADATA_NAMESPACE)

_ROOT = "{%s}guest" % METADATA_NAMESPACE
_TAG = "{%s}tag" % METADATA_NAMESPACE
_MIGRATED = "{%s}migrated" % METADATA_NAMESPACE
_TAG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_TYPES = {bool: "bool", int: "int", float: "float", str: None}


class TagError(ValueError):
    """A tag that cannot be stored; str() says which and why."""


def validate_tags(tags):
    """The tags as stored (str, int, float or bool values); raises TagError for anything else."""
    checked = {}
    for name, value in (tags or {}).items():
        if not isinstance(name, str) or not _TAG_NAME.match(name):
            raise TagError("tags: %r is not a valid tag name; use letters, digits, '_', '.' and '-', "
                           "starting with a letter or '_' (at most 64 characters)" % (name,))
        if type(value) not in _TYPES:  # pylint: disable=unidiomatic-typecheck
            raise TagError("tags: the value of %r must be a string, number or boolean, not %s"
                           % (name, type(value).__name__))
        checked[name] = value
    return checked


def _decode(element):
    text, kind = element.text or "", element.get("type")
    if kind == "bool":
        return text.strip() == "true"
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    return text


def _encode(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class GuestMetadata:
    """Tags plus whatever else the collection keeps in a guest's ``kvmops:guest`` element."""

    def __init__(self, tags=None, others=None):
        self.tags = dict(tags or {})
        self.others = list(others or [])  # children written by other parts of the collection

    @classmethod
    def from_domain(cls, domain_root):
        """Read it from a parsed domain XML (the ``<domain>`` Element)."""
        own = domain_root.find("metadata/" + _ROOT)
        if own is None:
            return cls()
        tags, others = {}, []
        for child in own:
            if child.tag == _TAG and child.get("name"):
                tags[child.get("name")] = _decode(child)
            else:
                others.append(child)
        return cls(tags, others)

    @property
    def last_migration(self):
        """``{"at": epoch seconds, "source", "destination"}`` of the last migration, or None."""
        for child in self.others:
            if child.tag == _MIGRATED:
                try:
                    at = int(child.get("at"))
                except (TypeError, ValueError):
                    return None
                return dict(at=at, source=child.get("from"), destination=child.get("to"))
        return None

    def set_migration(self, at, source, destination):
        """Record a migration (replacing the one recorded before)."""
        self.others = [child for child in self.others if child.tag != _MIGRATED]
        self.others.append(ElementTree.Element(_MIGRATED, {"at": str(int(at)), "from": str(source),
                                                           "to": str(destination)}))

    def element(self):
        """The namespaced ``kvmops:guest`` Element, for a domain's ``<metadata>``."""
        root = ElementTree.Element(_ROOT)
        for name in sorted(self.tags):
            value = self.tags[name]
            tag = ElementTree.SubElement(root, _TAG, {"name": name})
            if _TYPES[type(value)]:
                tag.set("type", _TYPES[type(value)])
            tag.text = _encode(value)
        root.extend(self.others)
        return root

    def write_into(self, domain_root):
        """Replace the collection's element in a domain XML tree with this one."""
        metadata = domain_root.find("metadata")
        if metadata is None:
            metadata = ElementTree.Element("metadata")
            # libvirt keeps <metadata> right after name/uuid/title/description
            position = sum(1 for child in domain_root if child.tag in ("name", "uuid", "genid", "title", "description"))
            domain_root.insert(position, metadata)
        for old in metadata.findall(_ROOT):
            metadata.remove(old)
        metadata.append(self.element())

    def libvirt_fragment(self):
        """The element as virDomainSetMetadata wants it (libvirt adds the namespace itself)."""
        plain = copy.deepcopy(self.element())
        for node in plain.iter():
            node.tag = node.tag.replace("{%s}" % METADATA_NAMESPACE, "")
        return ElementTree.tostring(plain, encoding="unicode")
