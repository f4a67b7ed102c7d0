"""MRC movies: is the file as long as its MRC2014 header says?"""

from __future__ import annotations

import struct

from embuffer.safecopy.formats.source import ByteSource, Incomplete, StructureVerdict, read_exact

MRC_HEADER_BYTES = 1024

# Bytes per voxel by MRC mode; mode 101 (4-bit) is handled separately.
_MRC_MODE_BYTES = {0: 1, 1: 2, 2: 4, 3: 4, 4: 8, 6: 2, 12: 2}
_MRC_MODE_4BIT = 101


def check_mrc(source: ByteSource) -> StructureVerdict:
    """Compare the file size with the size the MRC2014 header promises.

    Bad content gives a verdict; read errors raise OSError (check_structure reports them).
    """
    try:
        return _check_mrc(source)
    except Incomplete as incomplete:
        return StructureVerdict(False, incomplete.reason)
    except (struct.error, ValueError, OverflowError) as error:
        return StructureVerdict(False, f"malformed MRC header: {error}")


def _check_mrc(source: ByteSource) -> StructureVerdict:
    size = source.size
    if size < MRC_HEADER_BYTES:
        raise Incomplete(
            f"MRC file has {size} bytes, shorter than the {MRC_HEADER_BYTES}-byte header"
        )
    header = read_exact(source, 0, MRC_HEADER_BYTES, "MRC header")
    byte_order, order_note = _mrc_byte_order(header)
    nx, ny, nz, mode = struct.unpack_from(byte_order + "4i", header, 0)
    (nsymbt,) = struct.unpack_from(byte_order + "i", header, 92)
    if nx <= 0 or ny <= 0 or nz <= 0:
        raise Incomplete(f"MRC header has dimensions {nx} x {ny} x {nz}{order_note}")
    if nsymbt < 0:
        raise Incomplete(f"MRC header has a negative extended header size {nsymbt}")
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
        raise Incomplete(f"MRC header has unknown mode {mode}{order_note}")
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
