"""Read and write single MRC images (gain and dark references), for the `_mod` variants.

Movies are never parsed this way (they are copied byte for byte); references are small 2D
images that embuffer flips, rotates or scales like Leginon's processing expects.
"""

from __future__ import annotations

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
    import numpy

    if image.dtype.name not in _MODES:
        image = image.astype(numpy.float32)
    image = image.astype(image.dtype.newbyteorder("<"))
    ny, nx = image.shape[-2:]
    nz = 1 if image.ndim == 2 else image.shape[0]
    header = bytearray(1024)
    struct.pack_into("<4i", header, 0, nx, ny, nz, _MODES[image.dtype.name])
    struct.pack_into("<3i", header, 28, nx, ny, nz)  # mx, my, mz
    struct.pack_into("<3f", header, 40, float(nx), float(ny), float(nz))  # cell size
    struct.pack_into("<3f", header, 52, 90.0, 90.0, 90.0)  # cell angles
    struct.pack_into("<3i", header, 64, 1, 2, 3)  # map columns, rows, sections
    struct.pack_into("<3f", header, 76, float(image.min()), float(image.max()), float(image.mean()))
    header[208:212] = b"MAP "
    header[212:216] = b"\x44\x44\x00\x00"
    replace_file(path, bytes(header) + image.tobytes(), ownership)
