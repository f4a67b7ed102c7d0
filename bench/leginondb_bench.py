"""leginondb lookups at a facility's size: embuffer's queries beside legacy's, with and without
an index on `CameraEMData.frames name`, and `embuffer ingest --once` on a dozen files.

    .venv/bin/python bench/leginondb_bench.py [--sizes 100k,1M,4M] [--repeat 15] [--rounds 3]

The databases are the test suite's (files/python/tests/support/large_leginondb.py: MyISAM,
latin1, 7 camera hosts, 3078 sessions over five years), built once and cached. Each lookup is
timed on a warm server over one kept connection, as the ingest service holds it: the median
of --repeat runs after one warm-up. Legacy's lookup is written as Leginon's ORM issues it for
rawtransfer.py's query_image_by_frames_name: per image class in turn (Acquisition, Dark,
Bright, Norm), `SELECT t0.*` joined to CameraEMData and InstrumentData with `JOIN (...) ON
(...)`, the host and frames name as equalities, `DEF_timestamp >= DATE_ADD(now(), INTERVAL
'-<check_days> 0:0:0' DAY_SECOND)`, `ORDER BY DEF_id DESC` and no LIMIT; when several rows
come back, each one's CameraEMData row is read to skip aligned sums.

Targets (issue #25): every lookup at least 3x faster than legacy's without the index and under
5 ms with it; `ingest --once` on a dozen files at 4M within 2 s of its time on an empty
database.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymysql
from common import NO_RESERVE, compile_package, embuffer
from embuffer.leginon.credentials import Credentials
from embuffer.leginon.db import LeginonDB
from embuffer.leginon.matching import explain_miss, find_image, load_session
from embuffer.leginon.placement import session_buffer_folder
from support.large_leginondb import (
    CAMERAS,
    DATABASE,
    INDEXED_DATABASE,
    SIZES,
    myisam_ddl,
    start_large_leginondb,
)
from support.leginondb_scenarios import BUFFER_ROOT, plant
from support.mariadb_server import TEST_PASSWORD, TEST_USER, MariaDBServer, start_private_server
from support.movies import mrc_bytes

CHECK_DAYS = 10
LEGACY_CLASSES = ("AcquisitionImageData", "DarkImageData", "BrightImageData", "NormImageData")
INGEST_MATCHED, INGEST_UNMATCHED = 10, 2


def median_ms(calls: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median time of each call, in ms. The calls take turns within each repeat, so a busy
    spell of a shared machine falls on all of them alike; one warm-up each first (caches
    filled, schema read, as in a running service)."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        call()
    for _ in range(repeat):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) * 1000 for name, values in times.items()}


def legacy_lookup(connection: pymysql.connections.Connection, name: str, host: str) -> object:
    """query_image_by_frames_name's queries, as sinedon writes them."""
    with connection.cursor(pymysql.cursors.DictCursor) as cursor:
        for table in LEGACY_CLASSES:
            cursor.execute(
                f"SELECT `t0`.* FROM `{table}` AS `t0` JOIN (`CameraEMData` AS `t1`, "
                "`InstrumentData` AS `t2`) ON (`t0`.`REF|CameraEMData|camera` = `t1`.`DEF_ID` "
                "AND `t1`.`REF|InstrumentData|ccdcamera` = `t2`.`DEF_ID`) "
                "WHERE `t2`.`hostname` = %s AND `t1`.`frames name` = %s AND "
                "`t0`.`DEF_timestamp` >= DATE_ADD(now(), INTERVAL %s DAY_SECOND) "
                "ORDER BY `t0`.DEF_id DESC",
                (host, name, f"-{CHECK_DAYS} 0:0:0"),
            )
            results = cursor.fetchall()
            if len(results) > 1:
                for row in results:  # r['camera']['align frames']: the referenced row
                    cursor.execute(
                        "SELECT * FROM `CameraEMData` WHERE `DEF_id` = %s",
                        (row["REF|CameraEMData|camera"],),
                    )
                    if not cursor.fetchone()["align frames"]:
                        return row
            if results:
                return results[0]
    return None


def time_lookups(server: MariaDBServer, database: str, image_path: str, repeat: int) -> dict:
    root = server.root(database)
    scenario = plant(root, image_path)
    db = LeginonDB(
        Credentials(TEST_USER, TEST_PASSWORD, database, host="127.0.0.1", port=server.port)
    )
    legacy = pymysql.connect(
        host="127.0.0.1", port=server.port, user=TEST_USER, password=TEST_PASSWORD,
        database=database, autocommit=True,
    )  # fmt: skip
    host, matched, unknown = scenario.host, scenario.names["matched"], scenario.names["unknown"]
    assert find_image(db, matched, host, CHECK_DAYS) is not None
    assert legacy_lookup(legacy, matched, host) is not None
    session = load_session(db, scenario.session_id)

    def place() -> object:
        return session_buffer_folder(db, load_session(db, session.session_id), 1, BUFFER_ROOT)

    found = {}
    for case, name in (("matched", matched), ("unmatched", unknown)):
        timed = median_ms(
            {
                "embuffer": lambda name=name: find_image(db, name, host, CHECK_DAYS),
                "legacy": lambda name=name: legacy_lookup(legacy, name, host),
            },
            repeat,
        )
        found |= {(case, who): value for who, value in timed.items()}
    timed = median_ms(
        {"explain_miss": lambda: explain_miss(db, unknown, host, CHECK_DAYS), "placement": place},
        repeat,
    )
    found |= {(case, "embuffer"): value for case, value in timed.items()}
    for connection in (root, legacy):
        connection.close()
    db.close()
    return found


def empty_leginondb() -> MariaDBServer:
    """A leginondb as a new facility's: the cameras and their buffer rows, nothing else."""
    server = start_private_server()
    server.create_leginondb(DATABASE, tables=())
    connection = server.root(DATABASE)
    with connection.cursor() as cursor:
        for statement in myisam_ddl().values():
            cursor.execute(statement)
        cursor.executemany(
            "INSERT INTO InstrumentData (name, hostname) VALUES (%s, %s)",
            [(name, host) for host, name, *_rest in CAMERAS],
        )
    connection.close()
    return server


def plant_movies(server: MariaDBServer, root: Path, stem: str) -> list[str]:
    """A new session of the first camera, its buffer row pointing at `root`/buffer, and the
    Leginon rows of INGEST_MATCHED movies; the frames names of all the files to drop."""
    image_path = root / "data" / "leginon" / "bench" / stem / "rawdata"
    image_path.mkdir(parents=True)
    names = [f"{stem}_{700 + n}" for n in range(INGEST_MATCHED + INGEST_UNMATCHED)]
    connection = server.root(DATABASE)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO BufferHostData (`REF|InstrumentData|ccdcamera`, `buffer hostname`, "
            "`buffer base path`, disabled, `append full head`) VALUES (1, 'bench', %s, 0, 0)",
            (str(root / "buffer"),),
        )
        cursor.execute(
            "INSERT INTO SessionData (name, `image path`, uid, gid) VALUES (%s, %s, %s, %s)",
            (stem, str(image_path), os.getuid(), os.getgid()),
        )
        session = cursor.lastrowid
        for n, name in enumerate(names[:INGEST_MATCHED]):
            cursor.execute(
                "INSERT INTO CameraEMData (`REF|SessionData|session`, "
                "`REF|InstrumentData|ccdcamera`, `frames name`, `save frames`, nframes) "
                "VALUES (%s, 1, %s, 1, 4)",
                (session, name),
            )
            cursor.execute(
                "INSERT INTO AcquisitionImageData (`REF|SessionData|session`, "
                "`REF|CameraEMData|camera`, filename) VALUES (%s, %s, %s)",
                (session, cursor.lastrowid, f"{stem}_{n:05d}en"),
            )
    connection.close()
    return names


def ingest_once_seconds(server: MariaDBServer, rounds: int) -> float:
    """Median wall time of `embuffer ingest --once` over a dozen settled files."""
    times = []
    for round_number in range(rounds):
        root = Path(tempfile.mkdtemp(prefix="embuffer-bench-ingest-", dir="/var/tmp"))
        names = plant_movies(server, root, f"bench{round_number}a")
        for folder in ("camera", "buffer", "quarantine", "state"):
            (root / folder).mkdir()
        server.write_credentials(root / "leginondb.cnf", DATABASE)
        (root / "embuffer.toml").write_text(
            f'[buffer]\nroot = "{root / "buffer"}"\nhostname = "bench"\n'
            f'quarantine = "{root / "quarantine"}"\njournal = "{root / "state" / "j.sqlite"}"\n'
            f'{NO_RESERVE}[database]\ncredentials = "{root / "leginondb.cnf"}"\n'
            f'[[camera]]\nhost = "{CAMERAS[0][0]}"\npath = "{root / "camera"}"\n'
            f"check_days = {CHECK_DAYS}\ngrace_minutes = 0\nsettle_seconds = 1\n"
        )
        settled = time.time() - 60
        for n, name in enumerate(names):
            movie = root / "camera" / f"{name}.mrc"
            movie.write_bytes(mrc_bytes(64, 64, 4, seed=n))
            os.utime(movie, (settled, settled))
        started = time.perf_counter()
        done = subprocess.run(
            embuffer("--config", str(root / "embuffer.toml"), "ingest", "--once"),
            capture_output=True,
            text=True,
        )
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"ingest --once failed:\n{done.stderr}")
        moved = len(list((root / "buffer").rglob("*.frames.mrc")))
        quarantined = len(list((root / "quarantine").rglob("*.mrc")))
        assert (moved, quarantined) == (INGEST_MATCHED, INGEST_UNMATCHED), (moved, quarantined)
        shutil.rmtree(root)
    return statistics.median(times)


def report(size: str, found: dict[tuple[str, str, str], float]) -> list[str]:
    """Print one size's rows; the missed targets."""
    missed = []
    for case in ("matched", "unmatched", "explain_miss", "placement"):
        cells = []
        for database in (DATABASE, INDEXED_DATABASE):
            ours = found[(database, case, "embuffer")]
            legacy = found.get((database, case, "legacy"))
            if legacy is None:
                cells.append(f"{ours:9.2f} {'-':>9} {'':>6}")
            else:
                cells.append(f"{ours:9.2f} {legacy:9.2f} {legacy / ours:5.1f}x")
            if legacy is not None and database == DATABASE and legacy < 3 * ours:
                missed.append(f"{size} {case}: {legacy / ours:.1f}x legacy, not 3x")
            if legacy is not None and database == INDEXED_DATABASE and ours >= 5:
                missed.append(f"{size} {case} with the index: {ours:.1f} ms, not < 5 ms")
        print(f"{size:>5} {case:<13} {cells[0]}   {cells[1]}".rstrip())
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100k,1M,4M")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3, help="ingest --once medians")
    args = parser.parse_args()
    compile_package()
    sizes = args.sizes.split(",")
    missed: list[str] = []
    empty = empty_leginondb()
    ingest = {"empty": ingest_once_seconds(empty, args.rounds)}
    empty.stop()
    print("lookup median, ms        without the index              with the index")
    print("size  case           embuffer    legacy  ratio    embuffer    legacy  ratio")
    for size in sizes:
        large = start_large_leginondb(SIZES[size])
        cached = "built now" if large.built_now else "cached"
        print(
            f"{size:>5} (database build {large.build.plain:.0f} s, indexed copy "
            f"{large.build.indexed:.0f} s, {cached})"
        )
        found: dict[tuple[str, str, str], Any] = {}
        for database in (DATABASE, INDEXED_DATABASE):
            image_path = tempfile.mkdtemp(prefix="embuffer-bench-leginon-")
            timed = time_lookups(large.server, database, image_path, args.repeat)
            found |= {(database, *key): value for key, value in timed.items()}
            shutil.rmtree(image_path)
        missed += report(size, found)
        ingest[size] = ingest_once_seconds(large.server, args.rounds)
        large.stop()
    print("\ningest --once, 12 files (10 matched, 2 quarantined), median:")
    for size, seconds in ingest.items():
        print(f"  {size:>5}: {seconds:.2f} s")
    if "4M" in ingest and ingest["4M"] - ingest["empty"] > 2.0:
        missed.append(f"ingest --once at 4M: {ingest['4M'] - ingest['empty']:.2f} s over empty")
    for line in missed:
        print(f"MISSED {line}")
    print("all targets met" if not missed else f"{len(missed)} target(s) missed")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
