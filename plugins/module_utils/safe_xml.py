# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Parse XML that a user or a hypervisor handed us, without trusting it.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

libvirt XML never needs a DTD, so any document type or entity declaration is refused
before ElementTree sees the text: that rules out entity expansion bombs and external
entities without depending on defusedxml.
"""

from __future__ import annotations

from xml.etree import ElementTree
from xml.parsers import expat


class XMLError(ValueError):
    """XML that is malformed or not allowed; str() names what and where."""


def _refuse_declaration(*_args):
    raise XMLError("document type and entity declarations are not allowed")


def parse_xml(text, what="XML"):
    """The root Element of ``text``; raises XMLError naming ``what`` when it is not acceptable."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    guard = expat.ParserCreate()
    guard.StartDoctypeDeclHandler = _refuse_declaration
    guard.EntityDeclHandler = _refuse_declaration
    try:
        guard.Parse(text, True)
        return ElementTree.fromstring(text)  # noqa: S314  (expat above refused DTDs and entities)
    except XMLError as error:
        raise XMLError("%s: %s" % (what, error)) from None
    except (expat.ExpatError, ElementTree.ParseError) as error:
        raise XMLError("%s is not well-formed XML: %s" % (what, error)) from None


def to_xml(element):
    """Serialise an Element as text (no XML declaration), the form libvirt's define calls take."""
    return ElementTree.tostring(element, encoding="unicode")


def sub_element(parent, tag, text=None, **attributes):
    """Append a child with attributes (None values skipped) and optional text; returns it."""
    child = ElementTree.SubElement(parent, tag, {k: str(v) for k, v in attributes.items() if v is not None})
    if text is not None:
        child.text = str(text)
    return child


def ensure_child(parent, tag, index=None):
    """The first child called ``tag``, created (at ``index``, else at the end) when missing."""
    child = parent.find(tag)
    if child is None:
        child = ElementTree.Element(tag)
        if index is None:
            parent.append(child)
        else:
            parent.insert(index, child)
    return child
