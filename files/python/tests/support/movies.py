"""Generate small but structurally faithful cryo-EM movies for tests: MRC, TIFF, EER.

Pure ``struct`` and bytes, no numpy. Content is deterministic for a given seed, so a test
can write the same movie twice and compare. The ``*_bytes`` functions return the whole file
so that a test can write it slowly in chunks, the way a camera PC does.

TIFF layouts (``layout=``):
- "interleaved": each page's IFD, then its pixel data (what tifffile writes).
- "data-first": each page's pixel data, then its IFD (what libtiff writes).
- "ifds-first": every IFD first, all pixel data at the end, so a prefix can hold a complete
  IFD chain whose strips are still missing.
In every layout the last byte of the file is one a reader needs, so every strict prefix is
an incomplete file.
"""

from __future__ import annotations

import os
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Layout = Literal["interleaved", "data-first", "ifds-first"]

MRC_MODE_BYTES = {0: 1, 1: 2, 2: 4, 3: 4, 4: 8, 6: 2, 12: 2}

# TIFF field types used here.
BYTE, ASCII, SHORT, LONG, UNDEFINED, LONG8 = 1, 2, 3, 4, 7, 16
_TYPE_CODES = {BYTE: "B", ASCII: "B", SHORT: "H", LONG: "I", UNDEFINED: "B", LONG8: "Q"}
_TYPE_SIZES = {BYTE: 1, ASCII: 1, SHORT: 2, LONG: 4, UNDEFINED: 1, LONG8: 8}

Tag = tuple[int, int, tuple[int, ...] | bytes]  # (tag, field type, values)

EER_COMPRESSION = 65001
EER_METADATA_TAG = 65001


def mrc_data_bytes(nx: int, ny: int, nz: int, mode: int) -> int:
    if mode == 101:
        return (nx + 1) // 2 * ny * nz
    return nx * ny * nz * MRC_MODE_BYTES[mode]


def mrc_bytes(
    nx: int,
    ny: int,
    nz: int,
    mode: int = 0,
    ext_header: int = 0,
    big_endian: bool = False,
    seed: int = 0,
) -> bytes:
    """Return an MRC2014 file: 1024-byte header, ``ext_header`` bytes, then random voxels."""
    order = ">" if big_endian else "<"
    header = bytearray(1024)
    struct.pack_into(order + "4i", header, 0, nx, ny, nz, mode)
    struct.pack_into(order + "3i", header, 16, 0, 0, 0)  # nxstart, nystart, nzstart
    struct.pack_into(order + "3i", header, 28, nx, ny, nz)  # mx, my, mz
    struct.pack_into(order + "3f", header, 40, float(nx), float(ny), float(nz))  # cell (A)
    struct.pack_into(order + "3f", header, 52, 90.0, 90.0, 90.0)
    struct.pack_into(order + "3i", header, 64, 1, 2, 3)  # mapc, mapr, maps
    struct.pack_into(order + "3f", header, 76, 0.0, 255.0, 127.5)  # dmin, dmax, dmean
    struct.pack_into(order + "2i", header, 88, 0, ext_header)  # ispg, nsymbt
    header[104:108] = b"FEI1" if ext_header else b"\0\0\0\0"  # exttyp
    struct.pack_into(order + "i", header, 108, 20140)  # nversion
    header[208:212] = b"MAP "
    header[212:216] = b"\x11\x11\0\0" if big_endian else b"\x44\x44\0\0"
    struct.pack_into(order + "i", header, 220, 1)  # nlabl
    header[224:304] = b"embuffer test movie".ljust(80)
    rng = random.Random(seed)
    body = rng.randbytes(ext_header + mrc_data_bytes(nx, ny, nz, mode))
    return bytes(header) + body


def write_mrc(
    path: str | os.PathLike[str],
    nx: int,
    ny: int,
    nz: int,
    mode: int = 0,
    ext_header: int = 0,
    big_endian: bool = False,
    seed: int = 0,
) -> bytes:
    data = mrc_bytes(nx, ny, nz, mode, ext_header, big_endian, seed)
    _write(path, data)
    return data


# ------------------------------------------------------------------------------------ TIFF


@dataclass
class TiffPage:
    """One IFD: its tags (without the offset/count pair) and its strips or tiles."""

    tags: list[Tag]
    blocks: list[bytes]
    tiled: bool = False
    pixels: bytes = field(default=b"", repr=False)  # uncompressed page, for cross-checks


def page_pixels(seed: int, page: int, width: int, height: int, bytes_per_sample: int) -> bytes:
    """The uncompressed pixel bytes that ``tiff_bytes`` stores for one page."""
    return random.Random(seed * 1_000_003 + page).randbytes(width * height * bytes_per_sample)


def tiff_pages(
    pages: int,
    width: int,
    height: int,
    *,
    tiled: bool = False,
    rows_per_strip: int | None = None,
    tile_size: int = 16,
    bytes_per_sample: int = 1,
    seed: int = 0,
) -> list[TiffPage]:
    """Describe uncompressed grey-scale pages, split into strips or tiles."""
    result = []
    row_bytes = width * bytes_per_sample
    for number in range(pages):
        pixels = page_pixels(seed, number, width, height, bytes_per_sample)
        tags: list[Tag] = [
            (256, LONG, (width,)),
            (257, LONG, (height,)),
            (258, SHORT, (8 * bytes_per_sample,)),
            (259, SHORT, (1,)),
            (262, SHORT, (1,)),
            (277, SHORT, (1,)),
            (284, SHORT, (1,)),
            (339, SHORT, (1,)),
        ]
        if number == 0:
            tags.append((270, ASCII, b"embuffer test movie\0"))
        if tiled:
            tags += [(322, LONG, (tile_size,)), (323, LONG, (tile_size,))]
            blocks = []
            for top in range(0, height, tile_size):
                for left in range(0, width, tile_size):
                    tile = bytearray(tile_size * tile_size * bytes_per_sample)
                    for row in range(top, min(top + tile_size, height)):
                        used = (min(left + tile_size, width) - left) * bytes_per_sample
                        start = row * row_bytes + left * bytes_per_sample
                        target = (row - top) * tile_size * bytes_per_sample
                        tile[target : target + used] = pixels[start : start + used]
                    blocks.append(bytes(tile))
        else:
            rows = rows_per_strip or height
            tags.append((278, LONG, (rows,)))
            step = rows * row_bytes
            blocks = [pixels[start : start + step] for start in range(0, len(pixels), step)]
        result.append(TiffPage(tags, blocks, tiled, pixels))
    return result


def tiff_bytes(
    pages: int,
    width: int,
    height: int,
    bigtiff: bool = False,
    tiled: bool = False,
    big_endian: bool = False,
    *,
    rows_per_strip: int | None = None,
    tile_size: int = 16,
    bytes_per_sample: int = 1,
    layout: Layout = "interleaved",
    seed: int = 0,
) -> bytes:
    """Return a multi-page grey-scale TIFF (classic or BigTIFF) with random pixels."""
    described = tiff_pages(
        pages,
        width,
        height,
        tiled=tiled,
        rows_per_strip=rows_per_strip,
        tile_size=tile_size,
        bytes_per_sample=bytes_per_sample,
        seed=seed,
    )
    return assemble_tiff(described, bigtiff=bigtiff, big_endian=big_endian, layout=layout)


def write_tiff(
    path: str | os.PathLike[str],
    pages: int,
    width: int,
    height: int,
    bigtiff: bool = False,
    tiled: bool = False,
    big_endian: bool = False,
    *,
    rows_per_strip: int | None = None,
    tile_size: int = 16,
    bytes_per_sample: int = 1,
    layout: Layout = "interleaved",
    seed: int = 0,
) -> bytes:
    data = tiff_bytes(
        pages,
        width,
        height,
        bigtiff,
        tiled,
        big_endian,
        rows_per_strip=rows_per_strip,
        tile_size=tile_size,
        bytes_per_sample=bytes_per_sample,
        layout=layout,
        seed=seed,
    )
    _write(path, data)
    return data


def eer_bytes(
    frames: int,
    width: int = 256,
    height: int = 256,
    bigtiff: bool = True,
    big_endian: bool = False,
    *,
    compression: int = EER_COMPRESSION,
    layout: Layout = "interleaved",
    seed: int = 0,
) -> bytes:
    """Return an EER-like movie: one IFD per frame, one strip of compressed-looking bytes."""
    rng = random.Random(seed)
    pages = []
    for number in range(frames):
        # Electron-event streams compress to a few percent of the frame; lengths vary.
        strip = rng.randbytes(rng.randint(width * height // 64 + 1, width * height // 16 + 1))
        tags: list[Tag] = [
            (256, LONG, (width,)),
            (257, LONG, (height,)),
            (258, SHORT, (1,)),
            (259, SHORT, (compression,)),
            (262, SHORT, (1,)),
            (277, SHORT, (1,)),
            (278, LONG, (height,)),
        ]
        if number == 0:
            xml = b'<metadata><item name="numberOfFrames">%d</item></metadata>' % frames
            tags.append((EER_METADATA_TAG, UNDEFINED, xml))
        pages.append(TiffPage(tags, [strip]))
    return assemble_tiff(pages, bigtiff=bigtiff, big_endian=big_endian, layout=layout)


def write_eer(
    path: str | os.PathLike[str],
    frames: int,
    width: int = 256,
    height: int = 256,
    bigtiff: bool = True,
    big_endian: bool = False,
    *,
    compression: int = EER_COMPRESSION,
    layout: Layout = "interleaved",
    seed: int = 0,
) -> bytes:
    data = eer_bytes(
        frames,
        width,
        height,
        bigtiff,
        big_endian,
        compression=compression,
        layout=layout,
        seed=seed,
    )
    _write(path, data)
    return data


def assemble_tiff(
    pages: Sequence[TiffPage],
    *,
    bigtiff: bool = False,
    big_endian: bool = False,
    layout: Layout = "interleaved",
) -> bytes:
    """Lay out pages as a TIFF file; every offset is computed from the layout."""
    order = ">" if big_endian else "<"
    offset_code, inline = ("Q", 8) if bigtiff else ("I", 4)
    count_code = "Q" if bigtiff else "H"
    entry_bytes = 20 if bigtiff else 12
    header_bytes = 16 if bigtiff else 8

    all_tags = [_page_tags(page, bigtiff) for page in pages]
    # A page's "region" is its out-of-line tag values (each on an even offset) followed by
    # its IFD, so the IFD's next-offset field is the last byte of the region.
    external = [[_external_size(entry, inline) for entry in tags] for tags in all_tags]
    values_sizes = [sum(size + size % 2 for size in sizes) for sizes in external]
    ifd_sizes = [struct.calcsize(count_code) + len(t) * entry_bytes + inline for t in all_tags]

    if layout == "interleaved":
        items = [(kind, n) for n in range(len(pages)) for kind in ("region", "data")]
    elif layout == "data-first":
        items = [(kind, n) for n in range(len(pages)) for kind in ("data", "region")]
    elif layout == "ifds-first":
        items = [("region", n) for n in range(len(pages))]
        items += [("data", n) for n in range(len(pages))]
    else:
        raise ValueError(f"unknown layout {layout!r}")
    region_at: dict[int, int] = {}
    block_at: dict[int, list[int]] = {}
    position = header_bytes
    for kind, number in items:
        if kind == "region":
            position += position % 2
            region_at[number] = position
            position += values_sizes[number] + ifd_sizes[number]
        else:
            block_at[number] = []
            for block in pages[number].blocks:
                block_at[number].append(position)
                position += len(block)
    ifd_at = [region_at[n] + values_sizes[n] for n in range(len(pages))]

    out = bytearray(position)
    out[0:2] = b"MM" if big_endian else b"II"
    if bigtiff:
        struct.pack_into(order + "HHHQ", out, 2, 43, 8, 0, ifd_at[0] if pages else 0)
    else:
        struct.pack_into(order + "HI", out, 2, 42, ifd_at[0] if pages else 0)
    for number, page in enumerate(pages):
        value_position = region_at[number]
        entry_position = ifd_at[number]
        struct.pack_into(order + count_code, out, entry_position, len(all_tags[number]))
        entry_position += struct.calcsize(count_code)
        for tag, field_type, values in all_tags[number]:
            if tag in (273, 324):
                values = tuple(block_at[number])
            data = _value_bytes(order, field_type, values)
            count = len(data) // _TYPE_SIZES[field_type]
            struct.pack_into(
                order + "HH" + offset_code, out, entry_position, tag, field_type, count
            )
            field_at = entry_position + 4 + inline
            if len(data) <= inline:
                out[field_at : field_at + len(data)] = data
            else:
                struct.pack_into(order + offset_code, out, field_at, value_position)
                out[value_position : value_position + len(data)] = data
                value_position += len(data) + len(data) % 2
            entry_position += entry_bytes
        next_ifd = ifd_at[number + 1] if number + 1 < len(pages) else 0
        struct.pack_into(order + offset_code, out, entry_position, next_ifd)
        for block, block_position in zip(page.blocks, block_at[number], strict=True):
            out[block_position : block_position + len(block)] = block
    return bytes(out)


def _page_tags(page: TiffPage, bigtiff: bool) -> list[Tag]:
    """The page's tags plus its offset/count pair, sorted as TIFF requires."""
    lengths = tuple(len(block) for block in page.blocks)
    # SHORT counts in classic files, LONG in BigTIFF: exercises all three integer types.
    offsets_type = LONG8 if bigtiff else LONG
    counts_type = LONG if bigtiff or max(lengths) >= 1 << 16 else SHORT
    offsets_tag, counts_tag = (324, 325) if page.tiled else (273, 279)
    tags: list[Tag] = [
        *page.tags,
        (offsets_tag, offsets_type, (0,) * len(lengths)),
        (counts_tag, counts_type, lengths),
    ]
    return sorted(tags, key=lambda entry: entry[0])


def _value_bytes(order: str, field_type: int, values: tuple[int, ...] | bytes) -> bytes:
    if isinstance(values, bytes):
        return values
    return struct.pack(f"{order}{len(values)}{_TYPE_CODES[field_type]}", *values)


def _external_size(entry: Tag, inline: int) -> int:
    """Bytes the entry's value needs outside the IFD (0 when it fits in the entry)."""
    _tag, field_type, values = entry
    length = len(values) * (1 if isinstance(values, bytes) else _TYPE_SIZES[field_type])
    return length if length > inline else 0


def _write(path: str | os.PathLike[str], data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
