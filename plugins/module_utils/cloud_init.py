# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""cloud-init NoCloud seeds: the texts, and the ISO 9660 image that carries them.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

cloud-init's NoCloud data source looks for a filesystem labelled ``cidata`` holding
``user-data`` and ``meta-data`` (and optionally ``network-config`` and ``vendor-data``).
``render_seed`` writes such a filesystem as an ISO 9660 image in pure Python, because
modules run on hypervisors that need not have genisoimage or xorriso, and the image is
uploaded to a storage volume over a libvirt stream anyway. ISO 9660 level 1 only knows
upper-case 8.3 names, so the image also has a Joliet directory (UCS-2 names), which is
what Linux (and so cloud-init) reads by default.

The image is deterministic: every timestamp is ``FIXED_TIME`` and the layout depends on
the contents only, so the same texts always give the same bytes and the same sha256.

Dicts given for user-data, meta-data or network-config are written as JSON, not YAML:
modules run on the target, where PyYAML is not guaranteed, and JSON is YAML that
cloud-init reads as it is (``#cloud-config`` followed by a JSON object). The JSON is
restricted to what YAML 1.1 (PyYAML, which cloud-init uses) reads back unchanged; keys
are sorted, so reordering a playbook's keys does not change the seed.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections import namedtuple

from collections.abc import Mapping

SECTOR = 2048
VOLUME_LABEL = "cidata"
# 2000-01-01 00:00:00 UTC: any fixed time keeps images reproducible; this one is
# recognisably artificial and valid in every date field of ISO 9660.
FIXED_TIME = (2000, 1, 1, 0, 0, 0)
CLOUD_CONFIG_HEADER = "#cloud-config\n"

# Order of the seed's files in the image's data area (directories are sorted by name).
SEED_FILES = ("user-data", "meta-data", "network-config", "vendor-data")

_SYSTEM_AREA_SECTORS = 16
_APPLICATION_ID = "KVMOPS.VIRT CLOUD-INIT NOCLOUD SEED"
_JOLIET_UCS2_LEVEL_3 = b"%/E"
_MAX_FILE_SIZE = 0xFFFFFFFF
# PyYAML refuses a mapping key longer than this (a "simple key" must fit in 1024 characters).
_MAX_YAML_KEY = 1024
# Characters JSON leaves raw that YAML 1.1 rejects (C1 controls, U+FFFE/U+FFFF) or folds
# into a space inside a quoted string (NEL, LINE and PARAGRAPH SEPARATOR): written as \\uXXXX.
_YAML_HAZARDS = re.compile("[\x7f-\x9f\u2028\u2029\ufffe\uffff]")
_ISO_NAME_CHARACTERS = re.compile(r"[^A-Z0-9_]")

SeedTexts = namedtuple("SeedTexts", ["user_data", "meta_data", "network_config"])


class CloudInitError(ValueError):
    """Seed content that cannot be written; str() names the option and what is wrong."""


# ---------------------------------------------------------------------------------------
# The texts
# ---------------------------------------------------------------------------------------

def seed_texts(user_data=None, meta_data=None, network_config=None, hostname=None, instance_id=None,
               option="cloud_init"):
    """The seed's texts (a ``SeedTexts``, ready for ``render_seed(*texts)``).

    A str is taken as it is (for example a shell script starting with ``#!``, or YAML the
    user wrote). A dict becomes JSON: user-data gets the ``#cloud-config`` header,
    meta-data gets ``instance-id`` (``instance_id``, else ``hostname``) and
    ``local-hostname`` (``hostname``) unless it sets them itself. None means: empty
    user-data, meta-data with only those defaults, no network-config. ``option`` is the
    module option named in error messages.
    """
    return SeedTexts(
        user_data=_user_data_text(user_data, "%s.user_data" % option),
        meta_data=_meta_data_text(meta_data, hostname, instance_id, "%s.meta_data" % option),
        network_config=_network_config_text(network_config, "%s.network_config" % option),
    )


def _user_data_text(value, where):
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return CLOUD_CONFIG_HEADER + yaml_compatible_json(value, where) + "\n"
    raise CloudInitError("%s must be a dict (cloud-config) or a string (used as it is), not %s"
                         % (where, _type_name(value)))


def _meta_data_text(value, hostname, instance_id, where):
    if isinstance(value, str):
        return value
    if value is not None and not isinstance(value, Mapping):
        raise CloudInitError("%s must be a dict or a string (used as it is), not %s" % (where, _type_name(value)))
    meta_data = dict(value or {})
    if instance_id or hostname:
        meta_data.setdefault("instance-id", instance_id or hostname)
    if hostname:
        meta_data.setdefault("local-hostname", hostname)
    return yaml_compatible_json(meta_data, where) + "\n"


def _network_config_text(value, where):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return yaml_compatible_json(value, where) + "\n"
    raise CloudInitError("%s must be a dict or a string (used as it is), not %s" % (where, _type_name(value)))


def yaml_compatible_json(value, where):
    """``value`` as indented JSON with sorted keys that YAML 1.1 reads back as ``value``."""
    return _json(value, where, "")


def _json(value, where, indent):
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return _json_float(value, where)
    if isinstance(value, str):
        return _json_string(value)
    inner = indent + "  "
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        items = []
        for key in sorted(_json_key(key, where) for key in value):
            items.append("%s%s: %s" % (inner, _json_string(key), _json(value[key], "%s.%s" % (where, key), inner)))
        return "{\n%s\n%s}" % (",\n".join(items), indent)
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        items = [inner + _json(item, "%s[%d]" % (where, index), inner) for index, item in enumerate(value)]
        return "[\n%s\n%s]" % (",\n".join(items), indent)
    raise CloudInitError("%s: a %s cannot be written to cloud-init (use strings, numbers, booleans, "
                         "null, lists and dicts)" % (where, _type_name(value)))


def _json_key(key, where):
    if not isinstance(key, str):
        raise CloudInitError("%s: key %r is a %s; cloud-init keys must be strings" % (where, key, _type_name(key)))
    if len(_json_string(key)) > _MAX_YAML_KEY:
        raise CloudInitError("%s: key %r... is longer than YAML allows (%d characters)"
                             % (where, key[:40], _MAX_YAML_KEY))
    return key


def _json_float(value, where):
    if math.isnan(value) or math.isinf(value):
        raise CloudInitError("%s: %r is not a number cloud-init can read" % (where, value))
    text = repr(value)
    mantissa, has_exponent, exponent = text.partition("e")
    # YAML 1.1 reads "1e+16" as a string: its floats need a dot before the exponent.
    if has_exponent and "." not in mantissa:
        text = "%s.0e%s" % (mantissa, exponent)
    return text


def _json_string(text):
    quoted = json.dumps(text, ensure_ascii=False)
    return _YAML_HAZARDS.sub(lambda match: "\\u%04x" % ord(match.group()), quoted)


def _type_name(value):
    return type(value).__name__


# ---------------------------------------------------------------------------------------
# The image
# ---------------------------------------------------------------------------------------

def render_seed(user_data, meta_data, network_config=None, vendor_data=None):
    """The NoCloud seed image (bytes of an ISO 9660 + Joliet filesystem labelled ``cidata``).

    Each argument is the text of one file; network-config and vendor-data are left out
    when None. The texts are written as UTF-8, byte for byte.
    """
    texts = dict(zip(SEED_FILES, (user_data, meta_data, network_config, vendor_data)))
    files = []
    for name in SEED_FILES:
        text = texts[name]
        if text is None and name in ("network-config", "vendor-data"):
            continue
        files.append((name, _encode(name, text)))
    return build_iso9660(VOLUME_LABEL, files)


def _encode(name, text):
    if not isinstance(text, str):
        raise CloudInitError("%s must be text (str), not %s" % (name, _type_name(text)))
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise CloudInitError("%s is not valid Unicode text at character %d: %s"
                             % (name, error.start, error.reason)) from error
    if len(data) > _MAX_FILE_SIZE:
        raise CloudInitError("%s is %d bytes; an ISO 9660 file holds at most %d" % (name, len(data), _MAX_FILE_SIZE))
    return data


# One of the image's two directory trees: ISO 9660 names with a-characters, or Joliet
# names with UCS-2 text fields.
_Tree = namedtuple("_Tree", ["root", "root_size", "path_table", "records", "encode"])


class _IsoFile:
    def __init__(self, name, data):
        self.name = name
        self.data = data
        self.extent = 0


def build_iso9660(volume_id, files):
    """An ISO 9660 image with a Joliet tree: one root directory holding ``files``.

    ``files`` is a list of (name, bytes); names must map to distinct ISO 9660 level 1
    names (upper case 8.3) and be valid Joliet names.
    """
    entries = [_IsoFile(name, data) for name, data in files]
    _check_names(entries)
    primary_records = sorted(entries, key=lambda entry: _iso9660_name(entry.name))
    joliet_records = sorted(entries, key=lambda entry: _joliet_name(entry.name))

    # Fixed layout: descriptors (PVD, Joliet SVD, terminator), four one-sector path
    # tables, the two root directories, then the files' data in the order given.
    primary_root_sectors = _directory_sectors([_iso9660_name(entry.name) for entry in primary_records])
    joliet_root_sectors = _directory_sectors([_joliet_name(entry.name) for entry in joliet_records])
    path_tables = _SYSTEM_AREA_SECTORS + 3
    primary_root = path_tables + 4
    joliet_root = primary_root + primary_root_sectors
    next_sector = joliet_root + joliet_root_sectors
    for entry in entries:
        entry.extent = next_sector
        next_sector += _sectors(len(entry.data))
    # An empty file takes no sector and points where the next file's data starts (as
    # mkisofs does); when nothing follows, one more sector keeps that address inside the image.
    total_sectors = next_sector + (1 if any(entry.extent == next_sector for entry in entries) else 0)

    primary = _Tree(
        root=primary_root, root_size=primary_root_sectors * SECTOR, path_table=path_tables,
        records=[(_iso9660_name(entry.name), entry) for entry in primary_records], encode=_ascii_field)
    joliet = _Tree(
        root=joliet_root, root_size=joliet_root_sectors * SECTOR, path_table=path_tables + 2,
        records=[(_joliet_name(entry.name), entry) for entry in joliet_records], encode=_ucs2_field)

    image = bytearray(total_sectors * SECTOR)
    _put(image, 16, _volume_descriptor(1, volume_id, primary, total_sectors))
    _put(image, 17, _volume_descriptor(2, volume_id, joliet, total_sectors))
    _put(image, 18, _terminator())
    for tree in (primary, joliet):
        _put(image, tree.path_table, _path_table(tree.root, "<"))
        _put(image, tree.path_table + 1, _path_table(tree.root, ">"))
        _put(image, tree.root, _root_directory(tree))
    for entry in entries:
        image[entry.extent * SECTOR:entry.extent * SECTOR + len(entry.data)] = entry.data
    return bytes(image)


def _check_names(entries):
    seen = {}
    for entry in entries:
        joliet = entry.name.encode("utf-16-be") if _is_bmp(entry.name) else b""
        if not entry.name or len(entry.name) > 64 or not joliet or re.search(r"[*/:;?\\\x00-\x1f]", entry.name):
            raise ValueError("%r cannot be a Joliet file name (1-64 characters, no * / : ; ? \\)" % entry.name)
        short = _iso9660_name(entry.name)
        if short in seen:
            raise ValueError("%r and %r both become %s in ISO 9660" % (seen[short], entry.name, short.decode()))
        seen[short] = entry.name


def _is_bmp(name):
    return all(ord(character) < 0x10000 for character in name)


def _iso9660_name(name):
    """Level 1 identifier: upper case 8.3 of d-characters, with version ``;1``."""
    base, dot, extension = name.upper().rpartition(".")
    if not dot:
        base, extension = extension, ""
    base = _ISO_NAME_CHARACTERS.sub("_", base)[:8]
    extension = _ISO_NAME_CHARACTERS.sub("_", extension)[:3]
    return ("%s.%s;1" % (base, extension)).encode("ascii")


def _joliet_name(name):
    return name.encode("utf-16-be")


def _sectors(size):
    return (size + SECTOR - 1) // SECTOR


def _put(image, sector, data):
    image[sector * SECTOR:sector * SECTOR + len(data)] = data


def _both16(value):
    return struct.pack("<H", value) + struct.pack(">H", value)


def _both32(value):
    return struct.pack("<I", value) + struct.pack(">I", value)


def _ascii_field(text, size):
    return text.encode("ascii").ljust(size, b" ")


def _ucs2_field(text, size):
    encoded = text.encode("utf-16-be")
    return (encoded + b"\x00 " * size)[:size]


def _volume_date():
    """17-byte date of a volume descriptor: digits in local time, then the GMT offset."""
    return ("%04d%02d%02d%02d%02d%02d00" % FIXED_TIME).encode("ascii") + b"\x00"


def _unset_volume_date():
    return b"0" * 16 + b"\x00"


def _record_date():
    year, month, day, hour, minute, second = FIXED_TIME
    return struct.pack("7B", year - 1900, month, day, hour, minute, second, 0)


def _directory_record(identifier, extent, size, is_directory):
    padding = b"\x00" if len(identifier) % 2 == 0 else b""
    length = 33 + len(identifier) + len(padding)
    return (struct.pack("BB", length, 0) + _both32(extent) + _both32(size) + _record_date()
            + struct.pack("BBB", 2 if is_directory else 0, 0, 0) + _both16(1)
            + struct.pack("B", len(identifier)) + identifier + padding)


def _record_length(identifier):
    return 33 + len(identifier) + (1 if len(identifier) % 2 == 0 else 0)


def _directory_sectors(identifiers):
    """Sectors a root directory needs: '.', '..', then records that never cross a sector."""
    sectors, used = 1, 34 + 34
    for identifier in identifiers:
        length = _record_length(identifier)
        if used + length > SECTOR:
            sectors, used = sectors + 1, 0
        used += length
    return sectors


def _root_directory(tree):
    records = [_directory_record(b"\x00", tree.root, tree.root_size, True),
               _directory_record(b"\x01", tree.root, tree.root_size, True)]
    records += [_directory_record(identifier, entry.extent, len(entry.data), False)
                for identifier, entry in tree.records]
    directory = bytearray()
    for record in records:
        room = SECTOR - len(directory) % SECTOR
        if len(record) > room:
            directory += b"\x00" * room
        directory += record
    return bytes(directory)


def _path_table(root_extent, byte_order):
    """A path table with the root directory only (L: little-endian, M: big-endian)."""
    return struct.pack(byte_order + "BBIH", 1, 0, root_extent, 1) + b"\x00\x00"


def _terminator():
    return b"\xffCD001\x01" + b"\x00" * (SECTOR - 7)


def _volume_descriptor(kind, volume_id, tree, total_sectors):
    """Primary (kind 1, a-/d-characters) or Joliet supplementary (kind 2, UCS-2) descriptor."""
    text = tree.encode
    root_record = _directory_record(b"\x00", tree.root, tree.root_size, True)
    escapes = _JOLIET_UCS2_LEVEL_3 if kind == 2 else b""
    descriptor = b"".join([
        struct.pack("B", kind), b"CD001", b"\x01", b"\x00",
        text("LINUX", 32),                      # system identifier
        text(volume_id, 32),                    # volume identifier: the label
        b"\x00" * 8,
        _both32(total_sectors),
        escapes.ljust(32, b"\x00"),
        _both16(1),                             # volume set size
        _both16(1),                             # volume sequence number
        _both16(SECTOR),
        _both32(10),                            # path table size: the root's record
        struct.pack("<I", tree.path_table), struct.pack("<I", 0),
        struct.pack(">I", tree.path_table + 1), struct.pack(">I", 0),
        root_record,
        text("", 128),                          # volume set
        text("", 128),                          # publisher
        text("", 128),                          # data preparer
        text(_APPLICATION_ID, 128),
        text("", 37), text("", 37), text("", 37),  # copyright, abstract, bibliographic files
        _volume_date(), _volume_date(), _unset_volume_date(), _unset_volume_date(),
        b"\x01", b"\x00",
    ])
    return descriptor.ljust(SECTOR, b"\x00")
