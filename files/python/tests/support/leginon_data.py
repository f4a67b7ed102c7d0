"""Write rows into a test leginondb the way Leginon does during a session.

Leginon inserts an InstrumentData row per camera, a SessionData row per session, then for
every exposure a CameraEMData row (carrying the camera-side `frames name`) and an
AcquisitionImageData row that refers to it; gain/dark references are Norm/Dark/BrightImageData
rows. These helpers keep the tests readable and the SQL in one place.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pymysql

# MySQL error numbers: no such table, no such column
ER_NO_SUCH_TABLE = 1146
ER_BAD_FIELD_ERROR = 1054


@dataclass
class LeginonDB:
    """`ddl` (table -> CREATE TABLE) makes inserts behave like Leginon's ORM: a table that
    does not exist yet is created by its first insert. A column the table lacks (an older
    site) is left out of the row, as an older Leginon would never have written it."""

    connection: pymysql.connections.Connection
    ddl: dict[str, str] = field(default_factory=dict)

    def _insert(self, table: str, values: dict[str, Any]) -> int:
        try:
            return self._insert_row(table, values)
        except pymysql.err.ProgrammingError as error:
            if error.args[0] != ER_NO_SUCH_TABLE or table not in self.ddl:
                raise
        self.ensure_table(table)
        return self._insert_row(table, values)

    def _insert_row(self, table: str, values: dict[str, Any]) -> int:
        present = self.columns(table)
        if present:
            values = {name: value for name, value in values.items() if name in present}
        columns = ", ".join(f"`{name}`" for name in values)
        marks = ", ".join(["%s"] * len(values))
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO `{table}` ({columns}) VALUES ({marks})", list(values.values())
            )
            return int(cursor.lastrowid)

    def ensure_table(self, table: str) -> None:
        """Create a table the way the ORM would on its first row (no-op when it exists)."""
        with self.connection.cursor() as cursor:
            cursor.execute(self.ddl[table].replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1))

    def columns(self, table: str) -> set[str]:
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
                (table,),
            )
            return {str(row[0]) for row in cursor.fetchall()}

    def tables(self) -> set[str]:
        with self.connection.cursor() as cursor:
            cursor.execute("SHOW TABLES")
            return {str(row[0]) for row in cursor.fetchall()}

    def instrument(self, name: str, hostname: str) -> int:
        return self._insert("InstrumentData", {"name": name, "hostname": hostname})

    def session(
        self,
        name: str,
        image_path: str,
        *,
        frame_path: str | None = None,
        uid: int | None = None,
        gid: int | None = None,
    ) -> int:
        return self._insert(
            "SessionData",
            {
                "name": name,
                "image path": image_path,
                "frame path": frame_path,
                "uid": uid,
                "gid": gid,
            },
        )

    def buffer_host(
        self,
        camera_id: int,
        hostname: str,
        base_path: str,
        *,
        disabled: bool = False,
        append_full_head: bool | None = False,
    ) -> int:
        values: dict[str, Any] = {
            "REF|InstrumentData|ccdcamera": camera_id,
            "buffer hostname": hostname,
            "buffer base path": base_path,
            "disabled": int(disabled),
        }
        if append_full_head is not None:
            values["append full head"] = int(append_full_head)
        return self._insert("BufferHostData", values)

    def camera_em(
        self,
        session_id: int,
        camera_id: int,
        frames_name: str,
        *,
        align_frames: bool = False,
        tiff: bool = False,
        eer: bool = False,
        flip: bool = False,
        rotate: int = 0,
        nframes: int | None = None,
    ) -> int:
        """`nframes`: what Leginon counted for the movie (None: not known to the test)."""
        return self._insert(
            "CameraEMData",
            {
                "REF|SessionData|session": session_id,
                "REF|InstrumentData|ccdcamera": camera_id,
                "frames name": frames_name,
                "save frames": 1,
                "align frames": int(align_frames),
                "tiff frames": int(tiff),
                "eer frames": int(eer),
                "frame flip": int(flip),
                "frame rotate": rotate,
                "nframes": nframes,
            },
        )

    def image(
        self,
        table: str,
        session_id: int,
        camera_em_id: int,
        filename: str,
        *,
        norm_id: int | None = None,
        dark_id: int | None = None,
        plan_id: int | None = None,
        timestamp: dt.datetime | None = None,
    ) -> int:
        values: dict[str, Any] = {
            "REF|SessionData|session": session_id,
            "REF|CameraEMData|camera": camera_em_id,
            "filename": filename,
            "MRC|image": filename + ".mrc",
        }
        if table == "AcquisitionImageData":
            values["REF|NormImageData|norm"] = norm_id
            values["REF|DarkImageData|dark"] = dark_id
            values["REF|CorrectorPlanData|corrector plan"] = plan_id
        if timestamp is not None:
            values["DEF_timestamp"] = timestamp
        return self._insert(table, values)

    def acquisition(
        self,
        session_id: int,
        camera_id: int,
        frames_name: str,
        filename: str,
        *,
        align_frames: bool = False,
        timestamp: dt.datetime | None = None,
        norm_id: int | None = None,
        dark_id: int | None = None,
        plan_id: int | None = None,
        **camera_options: Any,
    ) -> int:
        """One exposure: a CameraEMData row plus the AcquisitionImageData row pointing at it."""
        camera_em_id = self.camera_em(
            session_id, camera_id, frames_name, align_frames=align_frames, **camera_options
        )
        return self.image(
            "AcquisitionImageData",
            session_id,
            camera_em_id,
            filename,
            norm_id=norm_id,
            dark_id=dark_id,
            plan_id=plan_id,
            timestamp=timestamp,
        )

    def corrector_plan(
        self,
        session_id: int,
        camera_em_id: int,
        *,
        bad_rows: list[int],
        bad_cols: list[int],
        bad_pixels: list[tuple[int, int]],
    ) -> int:
        return self._insert(
            "CorrectorPlanData",
            {
                "REF|SessionData|session": session_id,
                "REF|CameraEMData|camera": camera_em_id,
                "SEQ|bad_rows": repr(bad_rows),
                "SEQ|bad_cols": repr(bad_cols),
                "SEQ|bad_pixels": repr(bad_pixels),
            },
        )

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self.connection.cursor(pymysql.cursors.DictCursor) as cursor:
            cursor.execute(sql, args)
            return list(cursor.fetchall())
