"""Read and write single MRC images (gain and dark references), for the `_mod` variants.

Movies are never parsed this way (they are copied byte for byte); references are small 2D
images that embuffer flips, rotates or scales like Leginon's processing expects.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path
from typing import Any

from embuffer.safecopy import nofollow
from embuffer.safecopy.copy import Ownership, replace_file

_DTYPES = {0: "i1", 1: "i2", 2: "f4", 6: "u2", 12: "f2"}
_MODES = {"int8": 0, "int16": 1, "float32": 2, "uint16": 6, "float16": 12}


def read_mrc(path: Path) -> Any:
    import numpy

    with os.fdopen(nofollow.open_file(path), "rb") as stream:
        raw = stream.read()
    if len(raw) < 1024:
        raise ValueError(f"{path} is too short to be an MRC image")
    big = raw[212:214] == b"\x11\x11"
    order = ">" if big else "<"
    nx, ny, nz, mode = struct.unpack(order + "4i", raw[:16])
    (extended,) = struct.unpack(order + "i", raw[92:96])
    if mode not in _DTYPES:
        raise ValueError(f"{path}: MRC mode {mode} is not supported for references")
    dtype = numpy.dtype(order + _DTYPES[mode])
    count = nx * ny * max(nz, 1)
    data = numpy.frombuffer(raw, dtype=dtype, count=count, offset=1024 + extended)
    image = data.reshape((max(nz, 1), ny, nx))
    return image[0] if nz <= 1 else image


def write_mrc(path: Path, image: Any, ownership: Ownership) -> None:
    """Write `image` as an MRC2014 file that `mrcfile.validate` accepts (version, statistics
    and machine stamp in the header), little-endian like the references Leginon writes."""
    import numpy

    if image.dtype.name not in _MODES:
        image = image.astype(numpy.float32)
    image = numpy.ascontiguousarray(image, dtype=image.dtype.newbyteorder("<"))
    replace_file(path, mrc_bytes(image), ownership)


def mrc_bytes(image: Any) -> bytes:
    """The whole file in memory: `replace_file` then writes it under a temporary name, with
    the session owner's ownership, and renames it into place, like every other file."""
    from mrcfile.mrcinterpreter import MrcInterpreter

    stream = io.BytesIO()
    writer = MrcInterpreter()
    # mrcfile's documented way to write a new file to a stream: default header, then stream
    writer._create_default_attributes()
    writer._iostream = stream
    writer.set_data(image)  # sets mode, dimensions, min/max/mean/rms from the data
    # 1 Å per pixel, the cell Leginon writes when it knows no pixel size (xlen = nx)
    writer.voxel_size = 1.0
    writer.flush()
    return stream.getvalue()
