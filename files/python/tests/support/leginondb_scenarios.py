"""A few exposures with known answers, planted in a facility-size leginondb at its highest ids
(where a real database's newest rows are), for the scale tests and the lookup benchmark.

Each frames name stands for one case a camera file can be in: matched (with norm, dark and
defect plan), a movie beside its aligned sum, a dark reference, another camera's exposure, an
exposure older than check_days, one older than explain_miss looks, only an aligned sum, and
a name no image has. Planted names end in three digits, the bulk rows' in two, so no
planted name is also a bulk one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pymysql
from support.large_leginondb import CAMERAS

HOST = CAMERAS[0][0]  # a buffered camera: it has a BufferHostData row
OTHER_HOST = CAMERAS[1][0]
BUFFER_ROOT = "/bufferdata/frames"  # the bulk rows' buffer base path


@dataclass(frozen=True)
class Scenario:
    host: str
    instrument_id: int
    session_id: int
    image_path: str
    names: dict[str, str]  # case -> frames name
    filenames: dict[str, str]  # case -> the image filename a match must give
    norm_id: int
    dark_id: int
    plan_id: int
    bulk_name: str  # the newest bulk exposure of HOST
    bulk_filename: str


def _insert(cursor: Any, table: str, values: dict[str, Any], days_ago: float = 0.0) -> int:
    stamp = dt.datetime.now() - dt.timedelta(days=days_ago)
    values = {"DEF_timestamp": stamp, **values}
    columns = ", ".join(f"`{name}`" for name in values)
    marks = ", ".join(["%s"] * len(values))
    cursor.execute(f"INSERT INTO `{table}` ({columns}) VALUES ({marks})", list(values.values()))
    return int(cursor.lastrowid)


def _exposure(
    cursor: Any,
    table: str,
    session: int,
    instrument: int,
    frames_name: str,
    filename: str,
    *,
    days_ago: float = 0.0,
    aligned: bool = False,
    refs: dict[str, int] | None = None,
) -> tuple[int, int]:
    camera = _insert(
        cursor,
        "CameraEMData",
        {
            "REF|SessionData|session": session,
            "REF|InstrumentData|ccdcamera": instrument,
            "frames name": frames_name,
            "save frames": 1,
            "align frames": int(aligned),
            "tiff frames": 1,
            "frame flip": 1,
            "frame rotate": 2,
            "nframes": 40,
        },
        days_ago,
    )
    values = {"REF|SessionData|session": session, "REF|CameraEMData|camera": camera}
    values |= {"filename": filename, "MRC|image": f"{filename}.mrc", **(refs or {})}
    return camera, _insert(cursor, table, values, days_ago)


def _instrument(cursor: Any, host: str) -> int:
    cursor.execute("SELECT MIN(DEF_id) FROM InstrumentData WHERE hostname = %s", (host,))
    return int(cursor.fetchone()[0])


def _newest_bulk(cursor: Any, instrument: int) -> tuple[str, str]:
    cursor.execute(
        "SELECT c.`frames name`, i.filename FROM CameraEMData c "
        "JOIN AcquisitionImageData i ON i.`REF|CameraEMData|camera` = c.DEF_id "
        "WHERE c.`REF|InstrumentData|ccdcamera` = %s AND c.DEF_timestamp >= NOW() - "
        "INTERVAL 5 DAY ORDER BY c.DEF_id DESC LIMIT 1",
        (instrument,),
    )
    name, filename = cursor.fetchone()
    return str(name), str(filename)


def plant(connection: pymysql.connections.Connection, image_path: str) -> Scenario:
    """Plant the cases (a new session of HOST whose images live under `image_path`)."""
    stem = dt.datetime.now().strftime("%Y%m%d_%H%M%S")
    cases = ("matched", "movie", "dark", "other_host", "old", "ancient", "aligned_only")
    names = {case: f"{stem}_{900 + n}" for n, case in enumerate((*cases, "unknown"))}
    filenames = {case: f"scale_{case}_00001en" for case in cases}
    with connection.cursor() as cursor:
        instrument, other = _instrument(cursor, HOST), _instrument(cursor, OTHER_HOST)
        bulk_name, bulk_filename = _newest_bulk(cursor, instrument)
        session = _insert(cursor, "SessionData", {"name": "scale01a", "image path": image_path})
        reference_camera = _insert(cursor, "CameraEMData", {"REF|SessionData|session": session})
        ref = {"REF|SessionData|session": session, "REF|CameraEMData|camera": reference_camera}
        norm = _insert(cursor, "NormImageData", {**ref, "filename": "scale_norm"})
        dark = _insert(cursor, "DarkImageData", {**ref, "filename": "scale_dark"})
        plan = _insert(
            cursor,
            "CorrectorPlanData",
            {"REF|SessionData|session": session, "SEQ|bad_rows": "[3]", "SEQ|bad_cols": "[]"},
        )
        refs = {
            "REF|NormImageData|norm": norm,
            "REF|DarkImageData|dark": dark,
            "REF|CorrectorPlanData|corrector plan": plan,
        }
        acquisition = "AcquisitionImageData"
        plain = [
            ("matched", acquisition, instrument, 0.0, refs),
            ("movie", acquisition, instrument, 0.0, None),
            ("dark", "DarkImageData", instrument, 0.0, None),
            ("other_host", acquisition, other, 0.0, None),
            ("old", acquisition, instrument, 40.0, None),
            ("ancient", acquisition, instrument, 200.0, None),
        ]
        for case, table, camera, days, case_refs in plain:
            _exposure(
                cursor, table, session, camera, names[case], filenames[case],
                days_ago=days, refs=case_refs,
            )  # fmt: skip
        # the camera's aligned sums, saved under the movies' frames names, newer than them
        for case in ("movie", "aligned_only"):
            aligned = f"scale_{case}_00001en-a"
            _exposure(cursor, acquisition, session, instrument, names[case], aligned, aligned=True)
    return Scenario(
        HOST, instrument, session, image_path, names, filenames, norm, dark, plan,
        bulk_name, bulk_filename,
    )  # fmt: skip
