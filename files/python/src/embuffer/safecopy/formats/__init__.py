"""Structure checks that say whether a movie file on the camera share is whole.

The settle window (size and mtime stable) tells us a writer has paused; these checks tell us
whether what it left behind is a complete file. They read only headers and IFDs (a few
hundred bytes per page, one ``os.pread`` each) and never the pixel data, because they run
about once a second on many files over a CIFS mount.

A structure check is necessary, not sufficient: a TIFF writer that appends pages leaves a
valid TIFF after every page, and an MRC writer may raise ``nz`` as it goes. The ingest keeps
the timing window on top of these checks.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from operator import add
from typing import Protocol

from embuffer.safecopy import nofollow

MRC_HEADER_BYTES = 1024

# Bytes per voxel by MRC mode; mode 101 (4-bit) is handled separately.
_MRC_MODE_BYTES = {0: 1, 1: 2, 2: 4, 3: 4, 4: 8, 6: 2, 12: 2}
_MRC_MODE_4BIT = 101

_SUFFIX_FORMATS = {".mrc": "mrc", ".mrcs": "mrc", ".tif": "tiff", ".tiff": "tiff", ".eer": "eer"}

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
class StructureVerdict:
    """What the structure of a file says about its completeness.

    ``complete`` is None when the format has no structure check (timing-only).
    """

    complete: bool | None
    reason: str
    expected_size: int | None = None
    frames: int | None = None  # MRC nz, TIFF/EER pages (IFDs) of a whole file


class ByteSource(Protocol):
    """Random access to the bytes of a file of known size."""

    @property
    def size(self) -> int: ...

    def read_at(self, offset: int, length: int) -> bytes: ...


class FileSource:
    """A ByteSource over an open file descriptor, read with os.pread."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    def read_at(self, offset: int, length: int) -> bytes:
        return os.pread(self._fd, length, offset)


class BytesSource:
    """A ByteSource over bytes in memory (a file as it looked at one moment)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    @property
    def size(self) -> int:
        return len(self._data)

    def read_at(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + length]


class _Incomplete(Exception):
    """Raised inside a check to stop it with a verdict of complete=False."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def format_of(path: str | os.PathLike[str]) -> str | None:
    """Return "mrc", "tiff" or "eer" by suffix (case-insensitive), or None."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    return _SUFFIX_FORMATS.get(suffix)


def check_structure(path: str | os.PathLike[str]) -> StructureVerdict:
    """Say whether the movie at ``path`` is structurally whole.

    Never raises for bad content or read errors: those give complete=False with a reason.
    """
    kind = format_of(path)
    if kind is None:
        return StructureVerdict(None, "no structure check for this file type; timing only")
    try:
        # never through a link; a FIFO with a movie's name cannot hang the poller
        fd = nofollow.open_file(path)
    except nofollow.NotRegularFile:
        return StructureVerdict(False, "not a regular file")
    except OSError as error:
        return StructureVerdict(False, f"cannot open: {_describe_error(error)}")
    try:
        info = os.fstat(fd)
        source = FileSource(fd, info.st_size)
        if kind == "mrc":
            return check_mrc(source)
        return check_tiff(source, label="EER" if kind == "eer" else "TIFF")
    except OSError as error:
        return StructureVerdict(False, f"read error: {_describe_error(error)}")
    finally:
        os.close(fd)


def _describe_error(error: OSError) -> str:
    name = os.strerror(error.errno) if error.errno is not None else str(error)
    return f"{type(error).__name__}: {name}"


def _read_exact(source: ByteSource, offset: int, length: int, what: str) -> bytes:
    """Read ``length`` bytes that the caller has checked lie inside the file."""
    data = source.read_at(offset, length)
    if len(data) != length:
        raise _Incomplete(f"short read of {what}: {len(data)} of {length} bytes at offset {offset}")
    return data


# --------------------------------------------------------------------------------------- MRC


def check_mrc(source: ByteSource) -> StructureVerdict:
    """Compare the file size with the size the MRC2014 header promises.

    Bad content gives a verdict; read errors raise OSError (check_structure reports them).
    """
    try:
        return _check_mrc(source)
    except _Incomplete as incomplete:
        return StructureVerdict(False, incomplete.reason)
    except (struct.error, ValueError, OverflowError) as error:
        return StructureVerdict(False, f"malformed MRC header: {error}")


def _check_mrc(source: ByteSource) -> StructureVerdict:
    size = source.size
    if size < MRC_HEADER_BYTES:
        raise _Incomplete(
            f"MRC file has {size} bytes, shorter than the {MRC_HEADER_BYTES}-byte header"
        )
    header = _read_exact(source, 0, MRC_HEADER_BYTES, "MRC header")
    byte_order, order_note = _mrc_byte_order(header)
    nx, ny, nz, mode = struct.unpack_from(byte_order + "4i", header, 0)
    (nsymbt,) = struct.unpack_from(byte_order + "i", header, 92)
    if nx <= 0 or ny <= 0 or nz <= 0:
        raise _Incomplete(f"MRC header has dimensions {nx} x {ny} x {nz}{order_note}")
    if nsymbt < 0:
        raise _Incomplete(f"MRC header has a negative extended header size {nsymbt}")
    voxels = nx * ny * nz
    if mode == _MRC_MODE_4BIT:
        # Two 4-bit voxels per byte. IMOD (the usual writer) starts every row on a byte
        # boundary, so an odd nx costs half a byte per row; a plain packed stream of
        # (nx*ny*nz + 1) // 2 bytes is accepted too, since the two differ only for odd nx.
        data_bytes = (nx + 1) // 2 * ny * nz
        accepted = {data_bytes, (voxels + 1) // 2}
        formula = f"ceil({nx}/2)*{ny}*{nz} (4-bit)"
    elif mode in _MRC_MODE_BYTES:
        data_bytes = voxels * _MRC_MODE_BYTES[mode]
        accepted = {data_bytes}
        formula = f"{nx}*{ny}*{nz}*{_MRC_MODE_BYTES[mode]}"
    else:
        raise _Incomplete(f"MRC header has unknown mode {mode}{order_note}")
    expected = MRC_HEADER_BYTES + nsymbt + data_bytes
    sums = f"{MRC_HEADER_BYTES}+{nsymbt}+{formula} = {expected} bytes, file has {size}"
    if size - MRC_HEADER_BYTES - nsymbt in accepted:
        return StructureVerdict(True, f"MRC header says {sums}{order_note}", expected, nz)
    relation = "smaller" if size < expected else "larger"
    return StructureVerdict(
        False, f"MRC header says {sums}: file is {relation} than header says", expected
    )


def _mrc_byte_order(header: bytes) -> tuple[str, str]:
    """Return the struct byte-order prefix and a note for the reason text."""
    stamp = header[212:214]
    if stamp in (b"\x44\x44", b"\x44\x41"):
        return "<", ""
    if stamp == b"\x11\x11":
        return ">", " (big-endian)"
    # Old writers leave the stamp empty; pick the order in which the header makes sense.
    for prefix, name in (("<", "little"), (">", "big")):
        nx, ny, nz, mode = struct.unpack_from(prefix + "4i", header, 0)
        plausible_mode = mode in _MRC_MODE_BYTES or mode == _MRC_MODE_4BIT
        if plausible_mode and nx > 0 and ny > 0 and nz > 0:
            return prefix, f" (no machine stamp, read as {name}-endian)"
    return "<", " (no machine stamp)"


# -------------------------------------------------------------------------------- TIFF / EER


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
    except _Incomplete as incomplete:
        return StructureVerdict(False, f"{label}: {incomplete.reason}")
    except (struct.error, ValueError, OverflowError) as error:
        return StructureVerdict(False, f"{label}: malformed: {error}")


def _check_tiff(source: ByteSource, label: str) -> StructureVerdict:
    layout = _tiff_layout(source)
    size = source.size
    if layout.first_ifd == 0:
        # libtiff writes the header first and fills in the first IFD offset later.
        raise _Incomplete("header has no first IFD offset yet (0)")
    seen: set[int] = set()
    offset = layout.first_ifd
    pages = 0
    while offset != 0:
        if offset in seen:
            raise _Incomplete(f"IFD chain loops back to offset {offset} after {pages} IFDs")
        seen.add(offset)
        if offset < layout.header_bytes:
            raise _Incomplete(f"IFD {pages} offset {offset} points into the header")
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
        raise _Incomplete(f"file has {size} bytes, shorter than the 8-byte TIFF header")
    head = _read_exact(source, 0, min(size, 16), "TIFF header")
    if head[:2] == b"II":
        byte_order = "<"
    elif head[:2] == b"MM":
        byte_order = ">"
    else:
        raise _Incomplete(f"no TIFF byte-order mark (starts with {head[:4]!r})")
    (version,) = struct.unpack_from(byte_order + "H", head, 2)
    if version == 42:
        (first,) = struct.unpack_from(byte_order + "I", head, 4)
        return _TiffLayout(byte_order, False, first)
    if version != 43:
        raise _Incomplete(f"TIFF version {version} is neither 42 (TIFF) nor 43 (BigTIFF)")
    if size < 16:
        raise _Incomplete(f"file has {size} bytes, shorter than the 16-byte BigTIFF header")
    offset_size, reserved, first = struct.unpack_from(byte_order + "HHQ", head, 4)
    if offset_size != 8 or reserved != 0:
        raise _Incomplete(f"BigTIFF header has offset size {offset_size}, reserved {reserved}")
    return _TiffLayout(byte_order, True, first, 16, "Q", 8, 20, "Q", 8)


def _check_ifd(source: ByteSource, layout: _TiffLayout, offset: int, index: int) -> int:
    """Check one IFD; return the offset of the next one."""
    size = source.size
    fixed = layout.count_bytes + layout.offset_bytes
    if offset + fixed > size:
        raise _Incomplete(f"IFD {index} at offset {offset} lies beyond the end ({size} bytes)")
    want = min(size - offset, fixed + _IFD_ENTRIES_FIRST_READ * layout.entry_bytes)
    block = _read_exact(source, offset, want, f"IFD {index}")
    (count,) = struct.unpack_from(layout.byte_order + layout.count_code, block, 0)
    if count == 0:
        raise _Incomplete(f"IFD {index} at offset {offset} has no entries")
    ifd_bytes = fixed + count * layout.entry_bytes
    if offset + ifd_bytes > size:
        raise _Incomplete(
            f"IFD {index} at offset {offset} has {count} entries and needs {ifd_bytes} bytes, "
            f"file ends at {size}"
        )
    if ifd_bytes > len(block):
        rest = _read_exact(source, offset + len(block), ifd_bytes - len(block), f"IFD {index}")
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
            raise _Incomplete(
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
        raise _Incomplete(f"IFD {index} at offset {offset} has neither strips nor tiles")
    offsets_tag, counts_tag, noun = pair
    if counts_tag not in entries:
        raise _Incomplete(f"IFD {index} has {noun} offsets but no {noun} byte counts")
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
        raise _Incomplete(f"{what} have field type {field_type}, not SHORT, LONG or LONG8")
    if value_count == 0:
        raise _Incomplete(f"{what} list is empty")
    if value_count > _MAX_BLOCKS_PER_IFD:
        raise _Incomplete(f"{what} list has an implausible {value_count} entries")
    array_bytes = value_count * struct.calcsize(code)
    fmt = f"{layout.byte_order}{value_count}{code}"
    if array_bytes <= layout.offset_bytes:
        return struct.unpack_from(fmt, value_field, 0)
    # The value offset was checked against the file size when the IFD was read.
    (array_offset,) = struct.unpack(layout.byte_order + layout.offset_code, value_field)
    return struct.unpack(fmt, _read_exact(source, array_offset, array_bytes, what))


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
        raise _Incomplete(
            f"IFD {index} has {len(offsets)} {noun} offsets but {len(counts)} byte counts"
        )
    if not any(counts):
        # tifffile writes compressed pages with zero byte counts and fills them in after the
        # data; an all-zero list means that has not happened yet.
        raise _Incomplete(f"IFD {index} {noun} byte counts are all zero (not written yet)")
    # K3 TIFFs hold hundreds of pages of ~4000 one-row strips: bound every strip's end by
    # max(offsets) + max(counts) in C, and add up pairs only where that bound overshoots.
    if max(offsets) + max(counts) > size and (end := max(map(add, offsets, counts))) > size:
        block = max(range(len(offsets)), key=lambda n: offsets[n] + counts[n])
        raise _Incomplete(
            f"IFD {index} {noun} {block} at {offsets[block]}+{counts[block]} = {end} lies "
            f"beyond the end of the file ({size} bytes)"
        )
    if all(counts):
        first = min(offsets)
    else:  # zero-length blocks (sparse files) may carry offset 0
        first = min(offset for offset, count in zip(offsets, counts, strict=True) if count)
    if first < layout.header_bytes:
        raise _Incomplete(f"IFD {index} has a {noun} at offset {first}, inside the header")
