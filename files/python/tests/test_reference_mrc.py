"""The gain and dark references embuffer writes (the `_mod` variants) are MRC2014 files that
`mrcfile.validate` accepts, in every mode they can take, and Leginon's own reader (pyami.mrc)
reads back exactly the array embuffer meant: values, shape and dtype."""

from __future__ import annotations

import io
import os
from pathlib import Path

import mrcfile
import numpy
import pytest
from conftest import BufferHost
from support.leginon_reader import read_with_pyami
from support.movies import tiff_bytes
from test_ingest import drop, ingest_once

from embuffer.leginon.mrcimage import read_mrc, write_mrc
from embuffer.safecopy.copy import Ownership

# (dtype, MRC mode): what a reference can be read as, and so what its `_mod` is written as
MODES = [("int8", 0), ("int16", 1), ("float32", 2), ("uint16", 6), ("float16", 12)]
# pyami.mrc knows no mode 12; Leginon never writes float16 references
LEGINON_MODES = [mode for mode in MODES if mode[0] != "float16"]


def reference_image(dtype: str) -> numpy.ndarray:
    """A 5x7 image spanning the dtype's sign and range, so a wrong mode or byte order shows."""
    info = numpy.iinfo(dtype) if numpy.dtype(dtype).kind in "iu" else None
    if info is None:
        # within what float16 squares without overflow: mrcfile.validate computes the rms in
        # the data's own dtype
        values = numpy.linspace(-3.5, 100.25, 35)
    else:
        values = numpy.linspace(info.min, info.max, 35).round()
    return values.reshape(5, 7).astype(dtype)


def validation(path: Path) -> tuple[bool, str]:
    report = io.StringIO()
    return bool(mrcfile.validate(str(path), print_file=report)), report.getvalue()


@pytest.mark.parametrize(("dtype", "mode"), MODES)
def test_a_written_reference_passes_mrcfile_validate(tmp_path, dtype, mode):
    image = reference_image(dtype)
    path = tmp_path / f"norm_{dtype}_mod.mrc"

    write_mrc(path, image, Ownership())

    valid, report = validation(path)
    assert valid, report
    with mrcfile.open(path) as written:
        assert int(written.header.mode) == mode
        assert int(written.header.nversion) in (20140, 20141)
        assert float(written.header.rms) == pytest.approx(float(image.std()), rel=1e-3)
        assert written.data.dtype == numpy.dtype(dtype)
        assert numpy.array_equal(written.data, image)
    assert numpy.array_equal(read_mrc(path), image)


def test_a_big_endian_reference_is_written_little_endian_and_valid(tmp_path):
    image = reference_image("float32")
    source = tmp_path / "norm_big.mrc"
    with mrcfile.new(source) as big:
        big.set_data(image.astype(">f4"))
    assert read_mrc(source).dtype.byteorder == ">"
    modified = tmp_path / "norm_big_mod.mrc"

    write_mrc(modified, numpy.flipud(read_mrc(source)), Ownership())

    valid, report = validation(modified)
    assert valid, report
    assert modified.read_bytes()[212:214] == b"\x44\x44"  # little-endian machine stamp
    assert numpy.array_equal(read_mrc(modified), numpy.flipud(image))


@pytest.mark.parametrize(("dtype", "mode"), LEGINON_MODES)
def test_leginon_reads_a_written_reference_identically(tmp_path, dtype, mode):
    image = reference_image(dtype)
    path = tmp_path / f"norm_{mode}_mod.mrc"
    write_mrc(path, image, Ownership())

    seen_by_leginon = read_with_pyami(path, tmp_path)

    assert seen_by_leginon.dtype == numpy.dtype(dtype)
    assert seen_by_leginon.shape == image.shape
    assert numpy.array_equal(seen_by_leginon, image)


def _reference(
    host: BufferHost, where: tuple[int, int], table: str, name: str, image: numpy.ndarray
) -> int:
    """A reference image Leginon took: its file in the image path and its row."""
    session, ref_camera = where
    write_mrc(host.image_path() / f"{name}.mrc", image, Ownership())
    return host.leginon.image(table, session, ref_camera, name)


def ingest_references(host: BufferHost, registered: dict[str, int]) -> dict[str, numpy.ndarray]:
    """Three movies, each with a norm of another mode and a dark that the frame count divides
    (float32), flipped and rotated: ingest writes their `_mod` variants. Returns what each
    `_mod` file must hold."""
    leginon, session, camera = host.leginon, registered["session"], registered["camera"]
    # the references lie in pytest's folder: the test's account owns the session
    leginon.rows(
        "UPDATE SessionData SET uid = %s, gid = %s WHERE DEF_id = %s",
        (os.getuid(), os.getgid(), session),
    )
    where = (session, leginon.camera_em(session, camera, "ref"))
    expected: dict[str, numpy.ndarray] = {}
    for index, dtype in enumerate(("int16", "uint16", "float32")):
        norm, dark = reference_image(dtype), numpy.full((5, 7), 40.0 + index, numpy.float32)
        norm_id = _reference(host, where, "NormImageData", f"norm_{dtype}", norm)
        dark_id = _reference(host, where, "DarkImageData", f"dark_{dtype}", dark)
        frames = 4 * (index + 1)
        expected[f"norm_{dtype}_mod.mrc"] = numpy.rot90(numpy.flipud(norm), 3)
        expected[f"dark_{dtype}_mod.mrc"] = numpy.rot90(numpy.flipud(dark), 3) / frames
        stamp = f"20261126_18000{index}_00"
        leginon.acquisition(
            session,
            camera,
            stamp,
            f"ref_movie_{index}",
            norm_id=norm_id,
            dark_id=dark_id,
            flip=True,
            rotate=1,
            nframes=frames,
        )
        drop(host.camera / f"{stamp}.tif", tiff_bytes(2, 8, 8, seed=50 + index))
    assert ingest_once(host) == 0
    references = host.buffer_folder() / "references"
    assert sorted(p.name for p in references.glob("*_mod.mrc")) == sorted(expected)
    return {str(references / name): image for name, image in expected.items()}


def test_references_ingest_writes_pass_mrcfile_validate(host, registered):
    for name, image in ingest_references(host, registered).items():
        valid, report = validation(Path(name))
        assert valid, report
        assert numpy.array_equal(read_mrc(Path(name)), image), name


def test_leginon_reads_the_references_ingest_writes_identically(host, registered, tmp_path):
    for name, image in ingest_references(host, registered).items():
        seen_by_leginon = read_with_pyami(Path(name), tmp_path)
        assert seen_by_leginon.dtype == image.dtype, name
        assert numpy.array_equal(seen_by_leginon, image), name
