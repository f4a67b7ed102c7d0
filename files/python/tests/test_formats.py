"""Structure checks: a movie that is still being written must never look whole."""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

import pytest
from support.movies import (
    assemble_tiff,
    eer_bytes,
    mrc_bytes,
    page_pixels,
    tiff_bytes,
    tiff_pages,
    write_eer,
    write_mrc,
    write_tiff,
)

from embuffer.safecopy.formats import (
    ByteSource,
    BytesSource,
    FileSource,
    StructureVerdict,
    check_mrc,
    check_structure,
    check_tiff,
    format_of,
)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def assert_every_prefix_incomplete(path: Path, data: bytes) -> None:
    """Shrink the file one byte at a time; no strict prefix may say complete."""
    write(path, data)
    assert check_structure(path).complete is True
    with open(path, "r+b") as handle:
        for length in range(len(data) - 1, -1, -1):
            handle.truncate(length)
            verdict = check_structure(path)
            assert verdict.complete is False, (length, len(data), verdict.reason)


def assert_random_prefixes_incomplete(path: Path, data: bytes, count: int, seed: int) -> None:
    rng = random.Random(seed)
    lengths = {rng.randrange(len(data)) for _ in range(count)}
    # Also the boundaries a writer is most likely to pause on.
    lengths |= {0, 1, 7, 8, 15, 16, 1023, 1024, 1025, len(data) - 1}
    for length in sorted(lengths):
        write(path, data[:length])
        verdict = check_structure(path)
        assert verdict.complete is False, (length, len(data), verdict.reason)


def classic_le_ifds(data: bytes) -> list[int]:
    """Offsets of the IFDs of a little-endian classic TIFF, walked independently."""
    offsets = []
    (offset,) = struct.unpack_from("<I", data, 4)
    while offset:
        offsets.append(offset)
        (count,) = struct.unpack_from("<H", data, offset)
        (offset,) = struct.unpack_from("<I", data, offset + 2 + 12 * count)
    return offsets


def classic_le_entry(data: bytes, ifd: int, tag: int) -> int:
    """Position of the 12-byte entry for ``tag`` in the IFD at ``ifd``."""
    (count,) = struct.unpack_from("<H", data, ifd)
    for number in range(count):
        position = ifd + 2 + 12 * number
        if struct.unpack_from("<H", data, position)[0] == tag:
            return position
    raise AssertionError(f"tag {tag} not in IFD at {ifd}")


def next_field(data: bytes, ifd: int) -> int:
    (count,) = struct.unpack_from("<H", data, ifd)
    return ifd + 2 + 12 * int(count)


def patched(data: bytes, position: int, fmt: str, *values: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, position, *values)
    return bytes(out)


class CountingSource:
    """A ByteSource that counts its reads, to show the page walk stays O(pages)."""

    def __init__(self, inner: ByteSource) -> None:
        self.inner = inner
        self.reads = 0

    @property
    def size(self) -> int:
        return self.inner.size

    def read_at(self, offset: int, length: int) -> bytes:
        self.reads += 1
        return self.inner.read_at(offset, length)


# --------------------------------------------------------------------------- dispatch


@pytest.mark.parametrize("name", ["movie.txt", "movie.xml", "movie", "gain.dm4", "x.mrc.part"])
def test_other_suffixes_have_no_structure_check(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, b"anything at all")
    verdict = check_structure(path)
    assert verdict.complete is None
    assert "timing" in verdict.reason


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.mrc", "mrc"),
        ("a.MRCS", "mrc"),
        ("a.Tif", "tiff"),
        ("a.TIFF", "tiff"),
        ("a.EER", "eer"),
        ("a.gain", None),
    ],
)
def test_suffix_dispatch_ignores_case(name: str, kind: str | None) -> None:
    assert format_of(name) == kind


def test_upper_case_suffix_is_checked_not_waved_through(tmp_path: Path) -> None:
    data = mrc_bytes(8, 8, 2)
    assert check_structure(write(tmp_path / "A.MRC", data)).complete is True
    assert check_structure(write(tmp_path / "B.MRC", data[:-1])).complete is False
    tif = tiff_bytes(2, 8, 8)
    assert check_structure(write(tmp_path / "C.TIF", tif[:-1])).complete is False


# --------------------------------------------------------------------------------- MRC


@pytest.mark.parametrize("mode", [0, 1, 2, 3, 4, 6, 12, 101])
@pytest.mark.parametrize("big_endian", [False, True])
def test_complete_mrc_of_every_mode(tmp_path: Path, mode: int, big_endian: bool) -> None:
    data = write_mrc(tmp_path / "m.mrc", 12, 10, 3, mode=mode, big_endian=big_endian)
    verdict = check_structure(tmp_path / "m.mrc")
    assert verdict == StructureVerdict(True, verdict.reason, len(data), frames=3)
    assert f"= {len(data)} bytes" in verdict.reason


def test_mrc_expected_size_counts_the_extended_header(tmp_path: Path) -> None:
    data = write_mrc(tmp_path / "m.mrcs", 16, 16, 4, mode=1, ext_header=3 * 1024)
    verdict = check_structure(tmp_path / "m.mrcs")
    assert verdict.complete is True
    assert verdict.expected_size == 1024 + 3 * 1024 + 16 * 16 * 4 * 2 == len(data)
    assert "1024+3072+16*16*4*2" in verdict.reason


def test_mrc_4bit_with_odd_width_accepts_row_padded_and_packed_sizes(tmp_path: Path) -> None:
    row_padded = mrc_bytes(5, 4, 2, mode=101)  # 3 bytes per row, as IMOD writes
    assert len(row_padded) == 1024 + 3 * 4 * 2
    packed = row_padded[: 1024 + (5 * 4 * 2 + 1) // 2]
    assert check_structure(write(tmp_path / "a.mrc", row_padded)).complete is True
    assert check_structure(write(tmp_path / "b.mrc", packed)).complete is True
    assert check_structure(write(tmp_path / "c.mrc", packed[:-1])).complete is False


@pytest.mark.parametrize(
    ("mode", "ext_header", "big_endian"), [(0, 0, False), (2, 128, False), (1, 0, True)]
)
def test_every_prefix_of_small_mrc_is_incomplete(
    tmp_path: Path, mode: int, ext_header: int, big_endian: bool
) -> None:
    data = mrc_bytes(6, 5, 3, mode=mode, ext_header=ext_header, big_endian=big_endian, seed=3)
    assert_every_prefix_incomplete(tmp_path / "m.mrc", data)


def test_random_prefixes_of_larger_mrc_are_incomplete(tmp_path: Path) -> None:
    data = mrc_bytes(256, 256, 12, mode=1, ext_header=4096, seed=5)
    assert_random_prefixes_incomplete(tmp_path / "big.mrc", data, count=300, seed=11)


def test_truncated_mrc_names_both_sizes(tmp_path: Path) -> None:
    data = mrc_bytes(4096 // 64, 4096 // 64, 40, mode=0)
    verdict = check_structure(write(tmp_path / "m.mrc", data[:-100]))
    assert verdict.complete is False
    assert verdict.expected_size == len(data)
    assert f"= {len(data)} bytes, file has {len(data) - 100}" in verdict.reason
    assert "smaller" in verdict.reason


def test_mrc_larger_than_header_says_is_not_complete(tmp_path: Path) -> None:
    data = mrc_bytes(8, 8, 2, mode=2)
    verdict = check_structure(write(tmp_path / "m.mrc", data + b"\0"))
    assert verdict.complete is False
    assert "larger than header says" in verdict.reason
    assert verdict.expected_size == len(data)


def test_mrc_header_not_yet_written_is_incomplete(tmp_path: Path) -> None:
    # Writers that preallocate or write data before the header leave zeros there.
    verdict = check_structure(write(tmp_path / "m.mrc", bytes(1024 + 64)))
    assert verdict.complete is False
    assert "dimensions 0 x 0 x 0" in verdict.reason


def test_mrc_short_header_is_incomplete(tmp_path: Path) -> None:
    verdict = check_structure(write(tmp_path / "m.mrc", mrc_bytes(4, 4, 1)[:1000]))
    assert verdict.complete is False
    assert "shorter than the 1024-byte header" in verdict.reason


@pytest.mark.parametrize(("position", "value"), [(12, 7), (12, -1), (0, -4), (8, 0)])
def test_mrc_unknown_mode_or_bad_dimensions_are_incomplete(
    tmp_path: Path, position: int, value: int
) -> None:
    data = patched(mrc_bytes(4, 4, 2), position, "<i", value)
    verdict = check_structure(write(tmp_path / "m.mrc", data))
    assert verdict.complete is False
    assert ("mode" in verdict.reason) if position == 12 else ("dimensions" in verdict.reason)


def test_mrc_negative_extended_header_is_incomplete(tmp_path: Path) -> None:
    data = patched(mrc_bytes(4, 4, 2), 92, "<i", -1024)
    verdict = check_structure(write(tmp_path / "m.mrc", data))
    assert verdict.complete is False
    assert "extended header" in verdict.reason


@pytest.mark.parametrize("stamp", [b"\x44\x41\0\0", b"\x44\x44\0\0"])
def test_mrc_little_endian_stamps(tmp_path: Path, stamp: bytes) -> None:
    data = bytearray(mrc_bytes(4, 6, 2, mode=1))
    data[212:216] = stamp
    assert check_structure(write(tmp_path / "m.mrc", bytes(data))).complete is True


@pytest.mark.parametrize("big_endian", [False, True])
def test_mrc_without_machine_stamp_is_read_in_the_order_that_makes_sense(
    tmp_path: Path, big_endian: bool
) -> None:
    data = bytearray(mrc_bytes(4, 6, 2, mode=2, big_endian=big_endian))
    data[212:216] = bytes(4)
    verdict = check_structure(write(tmp_path / "m.mrc", bytes(data)))
    assert verdict.complete is True
    assert ("big" if big_endian else "little") + "-endian" in verdict.reason
    assert check_structure(write(tmp_path / "t.mrc", bytes(data[:-1]))).complete is False


def test_big_endian_mrc_read_as_little_would_be_wrong(tmp_path: Path) -> None:
    # The stamp decides: a big-endian header claiming little-endian must not pass.
    data = bytearray(mrc_bytes(4, 6, 2, mode=2, big_endian=True))
    data[212:214] = b"\x44\x44"
    assert check_structure(write(tmp_path / "m.mrc", bytes(data))).complete is False


def test_mrc_written_slowly_in_chunks(tmp_path: Path) -> None:
    data = mrc_bytes(64, 64, 10, mode=6, ext_header=512, seed=9)
    path = tmp_path / "slow.mrc"
    chunks = [data[start : start + 3001] for start in range(0, len(data), 3001)]
    with open(path, "wb", buffering=0) as handle:
        for number, chunk in enumerate(chunks):
            handle.write(chunk)
            assert check_structure(path).complete is (number == len(chunks) - 1)


# ------------------------------------------------------------------------- TIFF / EER

TIFF_VARIANTS = [
    pytest.param({}, id="classic"),
    pytest.param({"big_endian": True}, id="classic-be"),
    pytest.param({"bigtiff": True}, id="bigtiff"),
    pytest.param({"bigtiff": True, "big_endian": True}, id="bigtiff-be"),
    pytest.param({"tiled": True}, id="tiled"),
    pytest.param({"bigtiff": True, "tiled": True, "big_endian": True}, id="bigtiff-tiled-be"),
    pytest.param({"rows_per_strip": 3}, id="strips"),
    pytest.param({"rows_per_strip": 1, "bigtiff": True}, id="bigtiff-strips"),
    pytest.param({"layout": "data-first", "rows_per_strip": 4}, id="data-first"),
    pytest.param({"layout": "ifds-first", "bigtiff": True}, id="ifds-first"),
    pytest.param({"bytes_per_sample": 2, "big_endian": True}, id="16bit-be"),
]


@pytest.mark.parametrize("options", TIFF_VARIANTS)
def test_complete_tiff(tmp_path: Path, options: dict[str, object]) -> None:
    write_tiff(tmp_path / "t.tif", 4, 40, 24, **options)  # type: ignore[arg-type]
    verdict = check_structure(tmp_path / "t.tif")
    assert verdict.complete is True, verdict.reason
    assert "4 IFDs" in verdict.reason


@pytest.mark.parametrize("options", TIFF_VARIANTS)
def test_every_prefix_of_small_tiff_is_incomplete(
    tmp_path: Path, options: dict[str, object]
) -> None:
    data = tiff_bytes(2, 20, 10, **options)  # type: ignore[arg-type]
    assert_every_prefix_incomplete(tmp_path / "t.tiff", data)


EER_VARIANTS = [
    pytest.param({}, id="bigtiff"),
    pytest.param({"big_endian": True}, id="bigtiff-be"),
    pytest.param({"bigtiff": False}, id="classic"),
    pytest.param({"bigtiff": False, "big_endian": True, "compression": 65002}, id="classic-be"),
    pytest.param({"layout": "ifds-first"}, id="ifds-first"),
]


@pytest.mark.parametrize("options", EER_VARIANTS)
def test_complete_eer(tmp_path: Path, options: dict[str, object]) -> None:
    write_eer(tmp_path / "m.eer", 7, **options)  # type: ignore[arg-type]
    verdict = check_structure(tmp_path / "m.eer")
    assert verdict.complete is True, verdict.reason
    assert verdict.reason.startswith("EER")
    assert "7 IFDs" in verdict.reason


@pytest.mark.parametrize("options", EER_VARIANTS)
def test_every_prefix_of_small_eer_is_incomplete(
    tmp_path: Path, options: dict[str, object]
) -> None:
    data = eer_bytes(3, 32, 32, **options)  # type: ignore[arg-type]
    assert_every_prefix_incomplete(tmp_path / "m.eer", data)


def test_random_prefixes_of_larger_tiff_and_eer_are_incomplete(tmp_path: Path) -> None:
    tif = tiff_bytes(60, 64, 48, rows_per_strip=8, seed=2)
    assert_random_prefixes_incomplete(tmp_path / "big.tif", tif, count=300, seed=1)
    big = tiff_bytes(40, 48, 48, bigtiff=True, tiled=True, big_endian=True, seed=4)
    assert_random_prefixes_incomplete(tmp_path / "big.tif", big, count=300, seed=2)
    eer = eer_bytes(200, 128, 128, seed=3)
    assert_random_prefixes_incomplete(tmp_path / "big.eer", eer, count=300, seed=3)


@pytest.mark.parametrize("bigtiff", [False, True])
def test_ifds_written_but_strips_missing_is_incomplete(tmp_path: Path, bigtiff: bool) -> None:
    data = tiff_bytes(5, 32, 16, bigtiff=bigtiff, rows_per_strip=4, layout="ifds-first")
    pixels_start = len(data) - 5 * 32 * 16
    # Every IFD and tag value is there: only the tail of the strip data is missing.
    for missing in (5 * 32 * 16, 32 * 4, 1):
        verdict = check_structure(write(tmp_path / "t.tif", data[: len(data) - missing]))
        assert verdict.complete is False
        assert "strip" in verdict.reason and "beyond the end" in verdict.reason
    assert data[pixels_start:] == b"".join(page_pixels(0, n, 32, 16, 1) for n in range(5))


def test_eer_frames_written_but_last_strips_missing(tmp_path: Path) -> None:
    data = eer_bytes(10, 64, 64, layout="ifds-first", seed=8)
    verdict = check_structure(write(tmp_path / "m.eer", data[:-10]))
    assert verdict.complete is False
    assert verdict.reason.startswith("EER: IFD 9 strip 0")


def test_tiff_written_slowly_in_chunks(tmp_path: Path) -> None:
    data = tiff_bytes(12, 64, 64, rows_per_strip=16, layout="data-first", seed=6)
    path = tmp_path / "slow.tif"
    chunks = [data[start : start + 777] for start in range(0, len(data), 777)]
    with open(path, "wb", buffering=0) as handle:
        for number, chunk in enumerate(chunks):
            handle.write(chunk)
            assert check_structure(path).complete is (number == len(chunks) - 1)


def test_ifd_chain_loop_is_detected(tmp_path: Path) -> None:
    data = tiff_bytes(3, 16, 8)
    ifds = classic_le_ifds(data)
    assert len(ifds) == 3
    back_to_first = patched(data, next_field(data, ifds[2]), "<I", ifds[0])
    verdict = check_structure(write(tmp_path / "t.tif", back_to_first))
    assert verdict.complete is False
    assert f"loops back to offset {ifds[0]} after 3 IFDs" in verdict.reason
    to_itself = patched(data, next_field(data, ifds[1]), "<I", ifds[1])
    assert check_structure(write(tmp_path / "t.tif", to_itself)).complete is False


@pytest.mark.parametrize("target", ["first-ifd", "next-ifd", "strip", "description", "counts"])
def test_offsets_past_the_end_are_incomplete(tmp_path: Path, target: str) -> None:
    data = tiff_bytes(2, 16, 8, rows_per_strip=2)
    ifds = classic_le_ifds(data)
    past_end = len(data) + 10
    if target == "first-ifd":
        bad = patched(data, 4, "<I", past_end)
    elif target == "next-ifd":
        bad = patched(data, next_field(data, ifds[1]), "<I", past_end)
    elif target == "strip":
        # The strip offsets of page 1 live out of line; move its last strip off the end.
        entry = classic_le_entry(data, ifds[1], 273)
        count, array = struct.unpack_from("<II", data, entry + 4)
        bad = patched(data, array + 4 * (count - 1), "<I", len(data) - 3)
    elif target == "description":
        # Writers such as tifffile put tag values after the IFD: one byte short here.
        entry = classic_le_entry(data, ifds[0], 270)
        (length,) = struct.unpack_from("<I", data, entry + 4)
        bad = patched(data, entry + 8, "<I", len(data) - length + 1)
    else:
        bad = patched(data, classic_le_entry(data, ifds[0], 279) + 8, "<I", past_end)
    verdict = check_structure(write(tmp_path / "t.tif", bad))
    assert verdict.complete is False
    assert "beyond the end" in verdict.reason


def test_strip_pointing_into_the_header_is_incomplete(tmp_path: Path) -> None:
    data = tiff_bytes(1, 16, 8)
    (ifd,) = classic_le_ifds(data)
    bad = patched(data, classic_le_entry(data, ifd, 273) + 8, "<I", 0)
    verdict = check_structure(write(tmp_path / "t.tif", bad))
    assert verdict.complete is False
    assert "inside the header" in verdict.reason


def test_byte_counts_not_yet_filled_in_are_incomplete(tmp_path: Path) -> None:
    data = tiff_bytes(2, 16, 8, rows_per_strip=4)
    ifds = classic_le_ifds(data)
    entry = classic_le_entry(data, ifds[1], 279)
    (count,) = struct.unpack_from("<I", data, entry + 4)
    assert count == 2  # two SHORT counts fit inline
    bad = patched(data, entry + 8, "<HH", 0, 0)
    verdict = check_structure(write(tmp_path / "t.tif", bad))
    assert verdict.complete is False
    assert "all zero" in verdict.reason


def test_ifd_without_strips_or_with_mismatched_counts_is_incomplete(tmp_path: Path) -> None:
    data = tiff_bytes(1, 16, 8)
    (ifd,) = classic_le_ifds(data)
    no_strips = patched(data, classic_le_entry(data, ifd, 273), "<H", 272)
    verdict = check_structure(write(tmp_path / "t.tif", no_strips))
    assert verdict.complete is False and "neither strips nor tiles" in verdict.reason
    entry = classic_le_entry(data, ifd, 279)
    mismatched = patched(data, entry + 4, "<I", 2)  # two counts for one strip
    verdict = check_structure(write(tmp_path / "t.tif", mismatched))
    assert verdict.complete is False and "1 strip offsets but 2 byte counts" in verdict.reason


def test_ifd_with_zero_entries_or_too_many_is_incomplete(tmp_path: Path) -> None:
    data = tiff_bytes(1, 16, 8)
    (ifd,) = classic_le_ifds(data)
    assert check_structure(write(tmp_path / "a.tif", patched(data, ifd, "<H", 0))).complete is False
    verdict = check_structure(write(tmp_path / "b.tif", patched(data, ifd, "<H", 60000)))
    assert verdict.complete is False and "60000 entries" in verdict.reason


@pytest.mark.parametrize(
    "head", [b"\x89PNG\r\n\x1a\n", b"II\x2a", b"II*\0\0\0", b"II\x2b\0\x04\0\0\0", b"MM\0\x2c"]
)
def test_not_a_tiff_header_is_incomplete(tmp_path: Path, head: bytes) -> None:
    data = head + bytes(64)
    assert check_structure(write(tmp_path / "t.tif", data)).complete is False


def test_two_hundred_page_tiff_takes_one_call_and_few_reads(tmp_path: Path) -> None:
    path = tmp_path / "k3.tif"
    write_tiff(path, 200, 64, 32, rows_per_strip=4)  # offsets and counts out of line
    fd = os.open(path, os.O_RDONLY)
    try:
        source = CountingSource(FileSource(fd, os.fstat(fd).st_size))
        verdict = check_tiff(source)
    finally:
        os.close(fd)
    assert verdict.complete is True
    assert "200 IFDs" in verdict.reason
    # Header, then per page one IFD read plus one read each for offsets and counts.
    assert source.reads <= 1 + 3 * 200


def test_single_strip_pages_need_one_read_each(tmp_path: Path) -> None:
    data = eer_bytes(300, 64, 64)
    source = CountingSource(BytesSource(data))
    assert check_tiff(source, label="EER").complete is True
    assert source.reads == 1 + 300


def test_sources_in_memory_match_files(tmp_path: Path) -> None:
    data = tiff_bytes(3, 16, 8, bigtiff=True)
    assert check_tiff(BytesSource(data)).complete is True
    assert check_tiff(BytesSource(data[:-1])).complete is False
    assert check_mrc(BytesSource(mrc_bytes(4, 4, 4))).complete is True


def test_sparse_tiles_with_zero_byte_counts_are_accepted(tmp_path: Path) -> None:
    pages = tiff_pages(1, 32, 32, tiled=True)
    pages[0].blocks[1] = b""  # an empty tile, as sparse writers leave them
    data = assemble_tiff(pages)
    assert check_structure(write(tmp_path / "t.tif", data)).complete is True


# ------------------------------------------------------------------------- read errors


def test_vanished_file_is_incomplete_with_the_error(tmp_path: Path) -> None:
    verdict = check_structure(tmp_path / "gone.mrc")
    assert verdict.complete is False
    assert "No such file" in verdict.reason


def test_read_error_is_reported_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.tif"
    write_tiff(path, 2, 16, 8)

    def failing_pread(fd: int, length: int, offset: int) -> bytes:
        raise OSError(5, os.strerror(5))

    monkeypatch.setattr(os, "pread", failing_pread)
    verdict = check_structure(path)
    assert verdict.complete is False
    assert "read error" in verdict.reason and os.strerror(5) in verdict.reason


def test_directory_and_fifo_with_movie_names_are_not_complete(tmp_path: Path) -> None:
    (tmp_path / "dir.mrc").mkdir()
    os.mkfifo(tmp_path / "pipe.tif")
    for name in ("dir.mrc", "pipe.tif"):
        verdict = check_structure(tmp_path / name)
        assert verdict.complete is False
        assert "not a regular file" in verdict.reason


# ------------------------------------------------------------- cross-check the generators


@pytest.mark.parametrize("options", TIFF_VARIANTS)
def test_generated_tiffs_read_back_with_tifffile(
    tmp_path: Path, options: dict[str, object]
) -> None:
    tifffile = pytest.importorskip("tifffile")
    write_tiff(tmp_path / "t.tif", 3, 40, 24, **options)  # type: ignore[arg-type]
    bytes_per_sample = int(options.get("bytes_per_sample", 1))  # type: ignore[call-overload]
    order = ">" if options.get("big_endian") else "<"
    with tifffile.TiffFile(tmp_path / "t.tif") as tif:
        assert tif.is_bigtiff is bool(options.get("bigtiff"))
        assert len(tif.pages) == 3
        for number, page in enumerate(tif.pages):
            pixels = page.asarray()
            assert pixels.shape == (24, 40)
            stored = pixels.astype(pixels.dtype.newbyteorder(order)).tobytes()
            assert stored == page_pixels(0, number, 40, 24, bytes_per_sample)


def test_generated_eer_reads_back_with_tifffile(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    data = write_eer(tmp_path / "m.eer", 5, 64, 64)
    with tifffile.TiffFile(tmp_path / "m.eer") as tif:
        assert tif.is_bigtiff
        assert len(tif.pages) == 5
        for page in tif.pages:
            assert page.compression == 65001
            ((offset,), (count,)) = (page.dataoffsets, page.databytecounts)
            assert offset + count <= len(data)
        assert b"numberOfFrames" in tif.pages[0].tags[65001].value


def test_whole_files_report_their_frame_count(tmp_path: Path) -> None:
    # the page/section count the ingest compares with Leginon's nframes (frame_count.py)
    assert check_structure(write(tmp_path / "a.tif", tiff_bytes(7, 8, 8))).frames == 7
    assert check_structure(write(tmp_path / "b.mrc", mrc_bytes(8, 8, 5))).frames == 5
    assert check_structure(write(tmp_path / "c.eer", eer_bytes(11))).frames == 11
    assert check_structure(write(tmp_path / "d.tif", tiff_bytes(7, 8, 8)[:-1])).frames is None
