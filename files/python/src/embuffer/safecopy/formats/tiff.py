"""TIFF, BigTIFF and EER movies: does every IFD, tag value, strip and tile lie in the file?

EER is a TIFF container (one IFD per frame), so one walk serves both; the label only changes
the reason text.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from operator import add

from embuffer.safecopy.formats.source import ByteSource, Incomplete, StructureVerdict, read_exact

# TIFF field types: size in bytes of one value. Unknown types are skipped, as the spec asks.
_TIFF_TYPE_SIZES = {
    1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4,
    16: 8, 17: 8, 18: 8,
}  # fmt: skip
# Types an offset or byte-count array may use, with their struct codes.
_TIFF_INTEGER_CODES = {3: "H", 4: "I", 16: "Q"}

_TAG_STRIP_OFFSETS = 273
_TAG_STRIP_BYTE_COUNTS = 279
_TAG_TILE_OFFSETS = 324
_TAG_TILE_BYTE_COUNTS = 325

# Most camera TIFF and EER IFDs have 10-25 entries; reading room for 48 at once means one
# pread per IFD in practice, and a second one only for unusually large directories.
_IFD_ENTRIES_FIRST_READ = 48
# A 4096-row page stored one row per strip has 4096 strips; a corrupt count of billions
# must not make us unpack gigabytes.
_MAX_BLOCKS_PER_IFD = 1 << 22


@dataclass(frozen=True)
class _TiffLayout:
    """Byte order, first IFD, and the sizes that differ between classic TIFF and BigTIFF."""

    byte_order: str  # struct prefix, "<" or ">"
    big: bool
    first_ifd: int
    header_bytes: int = 8
    count_code: str = "H"  # the entry count that starts an IFD
    count_bytes: int = 2
    entry_bytes: int = 12
    offset_code: str = "I"  # offsets, value counts, inline values, next-IFD links
    offset_bytes: int = 4


def check_tiff(source: ByteSource, label: str = "TIFF") -> StructureVerdict:
    """Walk the IFD chain and check every IFD, tag value, strip and tile lies in the file.

    Bad content gives a verdict; read errors raise OSError (check_structure reports them).
    """
    try:
        return _check_tiff(source, label)
    except Incomplete as incomplete:
        return StructureVerdict(False, f"{label}: {incomplete.reason}")
    except (struct.error, ValueError, OverflowError) as error:
        return StructureVerdict(False, f"{label}: malformed: {error}")


def _check_tiff(source: ByteSource, label: str) -> StructureVerdict:
    layout = _tiff_layout(source)
    size = source.size
    if layout.first_ifd == 0:
        # libtiff writes the header first and fills in the first IFD offset later.
        raise Incomplete("header has no first IFD offset yet (0)")
    seen: set[int] = set()
    offset = layout.first_ifd
    pages = 0
    while offset != 0:
        if offset in seen:
            raise Incomplete(f"IFD chain loops back to offset {offset} after {pages} IFDs")
        seen.add(offset)
        if offset < layout.header_bytes:
            raise Incomplete(f"IFD {pages} offset {offset} points into the header")
        offset = _check_ifd(source, layout, offset, pages)
        pages += 1
    kind = "BigTIFF" if layout.big else "classic TIFF"
    order = "big-endian" if layout.byte_order == ">" else "little-endian"
    return StructureVerdict(
        True,
        f"{label} ({kind}, {order}): {pages} IFDs, chain ends, all strips/tiles inside "
        f"the file ({size} bytes)",
        frames=pages,
    )


def _tiff_layout(source: ByteSource) -> _TiffLayout:
    size = source.size
    if size < 8:
        raise Incomplete(f"file has {size} bytes, shorter than the 8-byte TIFF header")
    head = read_exact(source, 0, min(size, 16), "TIFF header")
    if head[:2] == b"II":
        byte_order = "<"
    elif head[:2] == b"MM":
        byte_order = ">"
    else:
        raise Incomplete(f"no TIFF byte-order mark (starts with {head[:4]!r})")
    (version,) = struct.unpack_from(byte_order + "H", head, 2)
    if version == 42:
        (first,) = struct.unpack_from(byte_order + "I", head, 4)
        return _TiffLayout(byte_order, False, first)
    if version != 43:
        raise Incomplete(f"TIFF version {version} is neither 42 (TIFF) nor 43 (BigTIFF)")
    if size < 16:
        raise Incomplete(f"file has {size} bytes, shorter than the 16-byte BigTIFF header")
    offset_size, reserved, first = struct.unpack_from(byte_order + "HHQ", head, 4)
    if offset_size != 8 or reserved != 0:
        raise Incomplete(f"BigTIFF header has offset size {offset_size}, reserved {reserved}")
    return _TiffLayout(byte_order, True, first, 16, "Q", 8, 20, "Q", 8)


def _check_ifd(source: ByteSource, layout: _TiffLayout, offset: int, index: int) -> int:
    """Check one IFD; return the offset of the next one."""
    size = source.size
    fixed = layout.count_bytes + layout.offset_bytes
    if offset + fixed > size:
        raise Incomplete(f"IFD {index} at offset {offset} lies beyond the end ({size} bytes)")
    want = min(size - offset, fixed + _IFD_ENTRIES_FIRST_READ * layout.entry_bytes)
    block = read_exact(source, offset, want, f"IFD {index}")
    (count,) = struct.unpack_from(layout.byte_order + layout.count_code, block, 0)
    if count == 0:
        raise Incomplete(f"IFD {index} at offset {offset} has no entries")
    ifd_bytes = fixed + count * layout.entry_bytes
    if offset + ifd_bytes > size:
        raise Incomplete(
            f"IFD {index} at offset {offset} has {count} entries and needs {ifd_bytes} bytes, "
            f"file ends at {size}"
        )
    if ifd_bytes > len(block):
        rest = read_exact(source, offset + len(block), ifd_bytes - len(block), f"IFD {index}")
        block += rest
    entries: dict[int, tuple[int, int, bytes]] = {}
    inline_bytes = layout.offset_bytes
    for number in range(count):
        start = layout.count_bytes + number * layout.entry_bytes
        tag, field_type = struct.unpack_from(layout.byte_order + "HH", block, start)
        (value_count,) = struct.unpack_from(
            layout.byte_order + layout.offset_code, block, start + 4
        )
        value_field = block[start + 4 + inline_bytes : start + 4 + 2 * inline_bytes]
        entries[tag] = (field_type, value_count, value_field)
        type_size = _TIFF_TYPE_SIZES.get(field_type)
        if type_size is None or value_count * type_size <= inline_bytes:
            continue
        (value_offset,) = struct.unpack(layout.byte_order + layout.offset_code, value_field)
        value_end = value_offset + value_count * type_size
        if value_end > size:
            raise Incomplete(
                f"IFD {index} tag {tag} value at {value_offset}..{value_end} lies beyond "
                f"the end of the file ({size} bytes)"
            )
    (next_offset,) = struct.unpack_from(
        layout.byte_order + layout.offset_code, block, ifd_bytes - layout.offset_bytes
    )
    if _TAG_STRIP_OFFSETS in entries:
        pair = (_TAG_STRIP_OFFSETS, _TAG_STRIP_BYTE_COUNTS, "strip")
    elif _TAG_TILE_OFFSETS in entries:
        pair = (_TAG_TILE_OFFSETS, _TAG_TILE_BYTE_COUNTS, "tile")
    else:
        raise Incomplete(f"IFD {index} at offset {offset} has neither strips nor tiles")
    offsets_tag, counts_tag, noun = pair
    if counts_tag not in entries:
        raise Incomplete(f"IFD {index} has {noun} offsets but no {noun} byte counts")
    offsets = _integer_array(source, layout, entries[offsets_tag], f"IFD {index} {noun} offsets")
    counts = _integer_array(source, layout, entries[counts_tag], f"IFD {index} {noun} counts")
    _check_blocks(offsets, counts, layout, index, noun, size)
    return int(next_offset)


def _integer_array(
    source: ByteSource, layout: _TiffLayout, entry: tuple[int, int, bytes], what: str
) -> tuple[int, ...]:
    field_type, value_count, value_field = entry
    code = _TIFF_INTEGER_CODES.get(field_type)
    if code is None:
        raise Incomplete(f"{what} have field type {field_type}, not SHORT, LONG or LONG8")
    if value_count == 0:
        raise Incomplete(f"{what} list is empty")
    if value_count > _MAX_BLOCKS_PER_IFD:
        raise Incomplete(f"{what} list has an implausible {value_count} entries")
    array_bytes = value_count * struct.calcsize(code)
    fmt = f"{layout.byte_order}{value_count}{code}"
    if array_bytes <= layout.offset_bytes:
        return struct.unpack_from(fmt, value_field, 0)
    # The value offset was checked against the file size when the IFD was read.
    (array_offset,) = struct.unpack(layout.byte_order + layout.offset_code, value_field)
    return struct.unpack(fmt, read_exact(source, array_offset, array_bytes, what))


def _check_blocks(
    offsets: tuple[int, ...],
    counts: tuple[int, ...],
    layout: _TiffLayout,
    index: int,
    noun: str,
    size: int,
) -> None:
    """Check that every strip or tile lies inside the file."""
    if len(offsets) != len(counts):
        raise Incomplete(
            f"IFD {index} has {len(offsets)} {noun} offsets but {len(counts)} byte counts"
        )
    if not any(counts):
        # tifffile writes compressed pages with zero byte counts and fills them in after the
        # data; an all-zero list means that has not happened yet.
        raise Incomplete(f"IFD {index} {noun} byte counts are all zero (not written yet)")
    # K3 TIFFs hold hundreds of pages of ~4000 one-row strips: bound every strip's end by
    # max(offsets) + max(counts) in C, and add up pairs only where that bound overshoots.
    if max(offsets) + max(counts) > size and (end := max(map(add, offsets, counts))) > size:
        block = max(range(len(offsets)), key=lambda n: offsets[n] + counts[n])
        raise Incomplete(
            f"IFD {index} {noun} {block} at {offsets[block]}+{counts[block]} = {end} lies "
            f"beyond the end of the file ({size} bytes)"
        )
    if all(counts):
        first = min(offsets)
    else:  # zero-length blocks (sparse files) may carry offset 0
        first = min(offset for offset, count in zip(offsets, counts, strict=True) if count)
    if first < layout.header_bytes:
        raise Incomplete(f"IFD {index} has a {noun} at offset {first}, inside the header")
