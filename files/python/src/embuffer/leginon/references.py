"""Gain/dark references next to the frames, as Leginon-based processing expects them.

For each movie taken with references, `<session frame path>/references/` receives the norm
and dark images (read from the session image path), `_mod` variants when the camera flips or
rotates frames (flip first, then rotate by (4 - rotate) x 90 degrees; the dark is also divided
by the number of frames), the defect plan as `defect_plan%04d.txt`, and one line per movie in
`reference_list.txt`. The journal keeps the norm/dark of every movie; a reference change in
the middle of a session is logged. Errors here never hold up a movie: they are logged.

A reference is read with the service's capabilities but handed to the session owner, so it
is copied only when the owner could have read it themselves, through every folder of its path
(owner_access.py); a refusal is logged and journaled once per file, and the movie goes on
without that reference (its column in the list stays empty).
"""

from __future__ import annotations

import ast
import contextlib
import logging
import os
import shutil
from pathlib import Path

from embuffer.journal import Journal
from embuffer.journal import queries as q
from embuffer.leginon.db import DatabaseUnavailable, LeginonDB
from embuffer.leginon.matching import ImageMatch, load_session
from embuffer.leginon.mrcimage import read_mrc, write_mrc
from embuffer.leginon.names import name_problem
from embuffer.leginon.owner_access import OwnerCannotRead, account_of, open_as
from embuffer.safecopy import nofollow
from embuffer.safecopy.copy import (
    DestinationExists,
    Ownership,
    apply_ownership,
    copy_file,
    make_folders,
    publish_in,
    replace_file,
)
from embuffer.safecopy.partials import PARTIAL_SUFFIX, partial_prefix
from embuffer.safecopy.publish import unlink_quietly

log = logging.getLogger("embuffer.references")
LIST_NAME = "reference_list.txt"


class ReferenceWriter:
    def __init__(self, db: LeginonDB, journal: Journal, camera: str) -> None:
        self.db = db
        self.journal = journal
        self.camera = camera
        self._last_by_session: dict[int, tuple[int | None, int | None]] = {}
        self._refused: set[str] = set()  # references already reported as not the owner's

    def write_for(
        self, movie_id: int, match: ImageMatch, folder: Path, ownership: Ownership
    ) -> None:
        if match.norm_id is None and match.dark_id is None:
            return
        self._note_change(movie_id, match)
        try:
            self._write(movie_id, match, folder, ownership)
        except DatabaseUnavailable:
            raise
        except (OSError, ValueError, LookupError) as error:
            self.journal.event(
                "reference_error", movie_id=movie_id, camera=self.camera, detail=str(error)
            )
            log.error("references for %r not written: %s", match.filename, error)

    def _note_change(self, movie_id: int, match: ImageMatch) -> None:
        current = (match.norm_id, match.dark_id)
        previous = self._last_by_session.get(match.session_id)
        if previous is None:
            previous = q.previous_references(self.journal.db, match.session_id, movie_id)
        if previous is not None and previous != current:
            detail = (
                f"session {match.session_id}: references changed from norm/dark "
                f"{previous[0]}/{previous[1]} to {current[0]}/{current[1]} at "
                f"{match.filename!r}"
            )
            self.journal.event(
                "reference_changed", movie_id=movie_id, camera=self.camera, detail=detail
            )
            log.warning("%s", detail)
        self._last_by_session[match.session_id] = current

    def _reference(self, table: str, row_id: int) -> tuple[str, str]:
        rows = self.db.rows(
            f"SELECT `filename`, `REF|SessionData|session` AS session_id FROM `{table}` "
            "WHERE `DEF_id` = %s",
            (row_id,),
        )
        if not rows:
            raise LookupError(f"{table} row {row_id} does not exist")
        filename = str(rows[0]["filename"])
        problem = name_problem(filename, f"{table} {row_id} filename")
        if problem is not None:  # read with the service's rights: never any other file
            raise ValueError(f"{problem}; reference not copied")
        session = load_session(self.db, int(rows[0]["session_id"]))
        return filename, session.image_path

    def _write(self, movie_id: int, match: ImageMatch, folder: Path, ownership: Ownership) -> None:
        references = folder / "references"
        make_folders(references, ownership)
        names: dict[str, str] = {"norm": "", "dark": ""}
        for kind, table, row_id in (
            ("norm", "NormImageData", match.norm_id),
            ("dark", "DarkImageData", match.dark_id),
        ):
            if row_id is None:
                continue
            filename, image_path = self._reference(table, row_id)
            plain, source = references / f"{filename}.mrc", Path(image_path) / f"{filename}.mrc"
            try:
                _copy_once(source, plain, ownership)
            except OwnerCannotRead as refused:
                self._report_refusal(movie_id, source, refused.strerror or str(refused))
                continue
            names[kind] = plain.name
            scale = (match.nframes or 1) if kind == "dark" else 1
            if match.frame_flip or match.frame_rotate or scale != 1:
                modified = references / f"{filename}_mod.mrc"
                if not nofollow.lexists(modified):
                    self._write_modified(plain, modified, match, scale, ownership)
                names[kind] = modified.name
        plan = self._defect_plan(match, references, ownership)
        self._append_list(references, ownership, match, names, plan)

    def _report_refusal(self, movie_id: int, source: Path, why: str) -> None:
        """Once per file and process: every movie of the session names the same reference."""
        detail = f"{source}: not readable by the session owner ({why}); reference not copied"
        if detail in self._refused:
            return
        self._refused.add(detail)
        self.journal.event("reference_error", movie_id=movie_id, camera=self.camera, detail=detail)
        log.error("%s", detail)

    @staticmethod
    def _write_modified(
        plain: Path, modified: Path, match: ImageMatch, scale: int, ownership: Ownership
    ) -> None:
        import numpy

        image = read_mrc(plain)
        if match.frame_flip:
            image = numpy.flipud(image)
        if match.frame_rotate:
            image = numpy.rot90(image, 4 - match.frame_rotate)
        if scale != 1:
            image = image.astype(numpy.float32) / float(scale)
        write_mrc(modified, numpy.ascontiguousarray(image), ownership)

    def _defect_plan(self, match: ImageMatch, references: Path, ownership: Ownership) -> str:
        if match.plan_id is None:
            return ""
        rows = self.db.rows(
            "SELECT `SEQ|bad_cols` AS cols, `SEQ|bad_rows` AS rows_, `SEQ|bad_pixels` AS pixels "
            "FROM `CorrectorPlanData` WHERE `DEF_id` = %s",
            (match.plan_id,),
        )
        if not rows:
            return ""
        name = f"defect_plan{match.plan_id:04d}.txt"
        target = references / name
        if not nofollow.lexists(target):
            values = [_sequence(rows[0][key]) for key in ("cols", "rows_", "pixels")]
            text = "".join(
                f"{label}: {value}\n"
                for label, value in zip(("bad_cols", "bad_rows", "bad_pixels"), values, strict=True)
            )
            replace_file(target, text.encode(), ownership)
        return name

    @staticmethod
    def _append_list(
        references: Path, ownership: Ownership, match: ImageMatch, names: dict[str, str], plan: str
    ) -> None:
        scale = match.nframes or 1
        line = (
            "\t".join(
                [
                    match.filename,
                    str(int(match.frame_flip)),
                    str(match.frame_rotate),
                    str(scale),
                    names["norm"],
                    names["dark"],
                    plan,
                ]
            )
            + "\n"
        )
        _append_line(references / LIST_NAME, match.filename, line, ownership)


def _append_line(listing: Path, key: str, line: str, ownership: Ownership) -> None:
    """Add `line` to the list unless a line for `key` is there; through the folder's
    descriptor, creating the file with O_EXCL, so a planted link is never written through."""
    with nofollow.folder(listing.parent) as folder_fd:
        try:
            fd = nofollow.open_in(folder_fd, listing.name, os.O_RDWR | os.O_APPEND)
            created = False
        except FileNotFoundError:
            fd = nofollow.open_in(
                folder_fd, listing.name, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600
            )
            created = True
        with os.fdopen(fd, "r+", encoding="utf-8") as stream:
            if any(entry.split("\t", 1)[0] == key for entry in stream.read().splitlines()):
                return
            stream.write(line)
            stream.flush()
            if created:
                apply_ownership(stream.fileno(), ownership, ownership.file_mode)
            os.fsync(stream.fileno())
        if created:
            os.fsync(folder_fd)


def _copy_once(source: Path, dest: Path, ownership: Ownership) -> None:
    """Copy a reference into the session's references folder unless it is there already.
    The copy goes to the session owner, read with the service's rights: only a file the
    owner could read anyway, or a row in leginondb would hand over any file of the host."""
    if nofollow.lexists(dest):
        return  # written for an earlier movie of this session
    if ownership.uid is None:  # the copy stays the service's own, as the session folder does
        with contextlib.suppress(DestinationExists):  # another writer was quicker
            copy_file(source, dest, ownership)
        return
    source_fd = open_as(account_of(ownership.uid), str(source))
    try:
        with contextlib.suppress(DestinationExists):
            _copy_from(source_fd, dest, ownership)
    finally:
        os.close(source_fd)


def _copy_from(source_fd: int, dest: Path, ownership: Ownership) -> None:
    """The bytes of the descriptor the owner's check opened (not the path again, which could
    have been swapped since) into a new file published under `dest`, never replacing one."""
    with nofollow.folder(dest.parent) as folder_fd:
        temp_fd, temp = nofollow.create_temporary(
            folder_fd, partial_prefix(dest.name), PARTIAL_SUFFIX
        )
        try:
            with os.fdopen(temp_fd, "wb") as out, os.fdopen(source_fd, "rb", closefd=False) as src:
                shutil.copyfileobj(src, out, 1 << 20)
                out.flush()
                apply_ownership(out.fileno(), ownership, ownership.file_mode)
                os.fsync(out.fileno())
            publish_in(folder_fd, temp, dest.name, shown=str(dest))
        except BaseException:
            unlink_quietly(folder_fd, temp)
            raise


def _sequence(text: object) -> list[object]:
    """sinedon stores sequences as their Python repr; parse it without eval."""
    if not text:
        return []
    value = ast.literal_eval(str(text))
    return list(value) if isinstance(value, list | tuple) else [value]
