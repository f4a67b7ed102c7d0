"""Structure checks that say whether a movie file on the camera share is whole, and the one
table of movie suffixes and their formats.

The settle window (size and mtime stable) tells us a writer has paused; these checks tell us
whether what it left behind is a complete file. They read only headers and IFDs (a few
hundred bytes per page, one ``os.pread`` each) and never the pixel data, because they run
about once a second on many files over a CIFS mount.

A structure check is necessary, not sufficient: a TIFF writer that appends pages leaves a
valid TIFF after every page, and an MRC writer may raise ``nz`` as it goes. The ingest keeps
the timing window on top of these checks.

The checks themselves live in ``mrc`` and ``tiff`` (EER is a TIFF container); ``source``
holds what both read and answer.
"""

from __future__ import annotations

import os

from embuffer.safecopy import nofollow
from embuffer.safecopy.formats.mrc import MRC_HEADER_BYTES, check_mrc
from embuffer.safecopy.formats.source import ByteSource, BytesSource, FileSource, StructureVerdict
from embuffer.safecopy.formats.tiff import check_tiff

__all__ = [
    "MOVIE_FORMAT_BY_SUFFIX",
    "MRC_HEADER_BYTES",
    "ByteSource",
    "BytesSource",
    "FileSource",
    "StructureVerdict",
    "check_mrc",
    "check_structure",
    "check_tiff",
    "format_of",
    "movie_suffix",
]

# Every movie suffix embuffer knows (lower case), with the format its structure check reads.
# The scan, the frames-name rule and the destination name all ask this table.
MOVIE_FORMAT_BY_SUFFIX = {
    ".mrc": "mrc",
    ".mrcs": "mrc",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".eer": "eer",
}


def movie_suffix(name: str | os.PathLike[str]) -> str | None:
    """The movie suffix ``name`` ends with, lower case (".tif", ".mrcs", ...), or None."""
    suffix = os.path.splitext(os.fspath(name))[1].lower()
    return suffix if suffix in MOVIE_FORMAT_BY_SUFFIX else None


def format_of(path: str | os.PathLike[str]) -> str | None:
    """Return "mrc", "tiff" or "eer" by suffix (case-insensitive), or None."""
    suffix = movie_suffix(path)
    return MOVIE_FORMAT_BY_SUFFIX[suffix] if suffix else None


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
