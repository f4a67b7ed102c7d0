"""A leginondb of a facility's size (100k to 4M images over five years) for the scale tests
and the lookup benchmark.

Made as Leginon's ORM (sinedon) makes it: the columns of leginondb.sql, MyISAM, latin1, and
indexes only on DEF_timestamp and the `REF|` columns, so `CameraEMData.frames name` (TEXT) has
none. Its shape is a facility's: seven camera PCs, 3078 sessions spread over five years, one
CameraEMData row per exposure with a distinct Gatan-style frames name, a few hundred
dark/bright/norm references in between, ids growing with time (the newest rows have the
highest ids) and DEF_timestamp ending at the build time, so a check_days window always holds
days of collection.

The rows are made by bulk SQL (INSERT ... SELECT from MariaDB's sequence tables), never row
by row. The first build of a size takes a minute or more, so the stopped server's datadir is
kept under /var/cache/embuffer/leginondb-<size>-<hash of this file and the DDL> (or the folder
named by EMBUFFER_LEGINONDB_CACHE) and copied for each use; without a writable cache folder
every use builds its own. A cached build older than `STALE_SECONDS` has its timestamps moved
forward to now (one UPDATE a table, in the cache), so the recent window is never empty
however old the cache is.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pymysql
from support.mariadb_server import SCHEMA, TEST_PASSWORD, TEST_USER, MariaDBServer, table_ddl

from embuffer.leginon.frames_index import FRAMES_NAME_INDEX_STATEMENT

DATABASE = "leginondb"
# the same rows again, with the index a facility may add on `frames name` (frames_index.py)
INDEXED_DATABASE = "leginondb_indexed"
SIZES = {"100k": 100_000, "1M": 1_000_000, "4M": 4_000_000}
SESSIONS = 3078
REFERENCES = 450  # dark, bright and norm in turn: 150 of each
YEARS = 5
# (hostname, camera name, TIFF frames, EER frames, frame flip, frame rotate)
CAMERAS = (
    ("krios1-k3", "GatanK3", 1, 0, 1, 2),
    ("krios2-k3", "GatanK3", 1, 0, 1, 2),
    ("krios3-falcon4", "Falcon4EC", 0, 1, 0, 0),
    ("glacios-k2", "GatanK2Counting", 0, 0, 1, 0),
    ("talos-falcon3", "Falcon3EC", 0, 0, 0, 0),
    ("arctica-de64", "DE64", 0, 0, 0, 0),
    ("krios4-k3", "GatanK3", 1, 0, 1, 2),
)
BUFFERED_CAMERAS = 4  # the first four send their frames to a buffer server
STALE_SECONDS = 86400  # a day: a check_days window still holds most of its rows
CACHE_ROOT = Path(os.environ.get("EMBUFFER_LEGINONDB_CACHE", "/var/cache/embuffer"))
TABLES_WITH_TIMESTAMPS = (
    "InstrumentData",
    "SessionData",
    "CameraEMData",
    "AcquisitionImageData",
    "DarkImageData",
    "BrightImageData",
    "NormImageData",
    "BufferHostData",
    "BufferFramePathData",
)


@dataclass(frozen=True)
class Shape:
    """Where each sequence number n (1..total) of the collection falls: every `every`-th
    exposure is a reference; the rest are acquisitions, numbered in time order."""

    images: int

    @property
    def total(self) -> int:
        return self.images + REFERENCES

    @property
    def every(self) -> int:
        return self.total // REFERENCES

    @property
    def step_seconds(self) -> float:
        return YEARS * 365.25 * 86400 / self.total


@dataclass(frozen=True)
class BuildTimes:
    plain: float  # leginondb, seconds
    indexed: float  # its copy with the frames-name index, seconds


@dataclass
class LargeLeginonDB:
    server: MariaDBServer
    images: int
    build: BuildTimes
    built_now: bool

    def root(self, database: str = DATABASE) -> pymysql.connections.Connection:
        return self.server.root(database)

    def stop(self) -> None:
        self.server.stop()
        shutil.rmtree(self.server.base, ignore_errors=True)


def cache_key() -> str:
    made_of = (
        Path(__file__).read_bytes() + SCHEMA.read_bytes() + FRAMES_NAME_INDEX_STATEMENT.encode()
    )
    digest = hashlib.sha256(made_of)
    return digest.hexdigest()[:12]


def myisam_ddl() -> dict[str, str]:
    """leginondb.sql's tables as sinedon creates them at a MyISAM site."""
    return {
        table: f"{statement} ENGINE=MyISAM DEFAULT CHARSET=latin1"
        for table, statement in table_ddl().items()
    }


def _run(cursor: pymysql.cursors.Cursor, statements: list[str]) -> None:
    for statement in statements:
        cursor.execute(statement)


def _instruments_and_sessions(cursor: pymysql.cursors.Cursor, shape: Shape) -> None:
    rows = [(i + 1, host, name) for i, (host, name, *_rest) in enumerate(CAMERAS)]
    rows += [(i + 8, host.split("-")[0] + "-scope", "TEM") for i, (host, *_r) in enumerate(CAMERAS)]
    cursor.executemany(
        "INSERT INTO InstrumentData (DEF_id, DEF_timestamp, name, hostname) "
        "VALUES (%s, NOW() - INTERVAL 6 YEAR, %s, %s)",
        [(row_id, name, host) for row_id, host, name in rows],
    )
    # A session starts ten minutes before its first exposure; its camera takes turns.
    first = f"CEIL((seq - 1) * {shape.total} / {SESSIONS}) + 1"
    cursor.execute(
        "INSERT INTO SessionData (DEF_id, DEF_timestamp, name, comment, `image path`, "
        "`frame path`, uid, gid, hidden) "
        f"SELECT seq, start, name, 'grid screening and collection', "
        "CONCAT('/data/leginon/', user, '/', name, '/rawdata'), "
        "CONCAT('/data/frames/', user, '/', name, '/rawdata'), 5000 + u, 5000, 0 FROM ("
        f"SELECT seq, FROM_UNIXTIME(@end - ({shape.total} - {first}) * {shape.step_seconds} - 600)"
        " AS start, "
        f"LOWER(CONCAT(DATE_FORMAT(FROM_UNIXTIME(@end - ({shape.total} - {first}) * "
        f"{shape.step_seconds}), '%y%b%d'), "
        f"CHAR(97 + (seq - 1) MOD {len(CAMERAS)} USING latin1))) AS name, "
        "seq MOD 40 AS u, CONCAT('user', seq MOD 40) AS user "
        f"FROM seq_1_to_{SESSIONS}) AS s"
    )


def _exposures(cursor: pymysql.cursors.Cursor, shape: Shape) -> None:
    """One CameraEMData row per exposure n; the acquisitions' and references' image rows."""
    total, every = shape.total, shape.every
    session = f"FLOOR((seq - 1) * {SESSIONS} / {total}) + 1"
    camera = f"((({session}) - 1) MOD {len(CAMERAS)}) + 1"
    stamp = f"FROM_UNIXTIME(@end - ({total} - seq) * {shape.step_seconds})"
    is_reference = f"(seq MOD {every} = 0 AND seq DIV {every} <= {REFERENCES})"
    cursor.execute(
        "INSERT INTO CameraEMData (DEF_id, DEF_timestamp, `REF|SessionData|session`, "
        "`REF|InstrumentData|ccdcamera`, `frames name`, `save frames`, `align frames`, "
        "`tiff frames`, `eer frames`, `frame flip`, `frame rotate`, nframes, `exposure time`, "
        "`SEQ|use frames`) "
        f"SELECT seq, {stamp}, {session}, {camera}, "
        # Gatan-style: the camera's clock to the second, then a counter
        f"CONCAT(DATE_FORMAT({stamp}, '%Y%m%d_%H%i%s'), '_', LPAD(seq MOD 100, 2, '0')), "
        f"NOT {is_reference}, 0, ELT({camera}, {', '.join(str(c[2]) for c in CAMERAS)}), "
        f"ELT({camera}, {', '.join(str(c[3]) for c in CAMERAS)}), "
        f"ELT({camera}, {', '.join(str(c[4]) for c in CAMERAS)}), "
        f"ELT({camera}, {', '.join(str(c[5]) for c in CAMERAS)}), "
        "IF(" + is_reference + ", 1, 40), 2.0, NULL "
        f"FROM seq_1_to_{total}"
    )
    references = f"LEAST(seq DIV {every}, {REFERENCES})"
    cursor.execute(
        "INSERT INTO AcquisitionImageData (DEF_id, DEF_timestamp, `REF|SessionData|session`, "
        "`REF|CameraEMData|camera`, `REF|NormImageData|norm`, `REF|DarkImageData|dark`, "
        "`REF|BrightImageData|bright`, filename, label, `MRC|image`) "
        f"SELECT seq - {references}, c.DEF_timestamp, c.`REF|SessionData|session`, seq, "
        f"NULLIF(({references}) DIV 3, 0), NULLIF((({references}) + 2) DIV 3, 0), "
        f"NULLIF((({references}) + 1) DIV 3, 0), name, 'Exposure', CONCAT(name, '.mrc') FROM ("
        f"SELECT c.seq, CONCAT(s.name, '_', LPAD(c.seq DIV 400 MOD 100000, 5, '0'), 'gr_', "
        "LPAD(c.seq DIV 40 MOD 100000, 5, '0'), 'sq_v01_', LPAD(c.seq DIV 4 MOD 100000, 5, '0'),"
        " 'hl_', LPAD(c.seq MOD 4, 5, '0'), 'ex') AS name "
        f"FROM seq_1_to_{total} c JOIN SessionData s ON s.DEF_id = "
        f"FLOOR((c.seq - 1) * {SESSIONS} / {total}) + 1 "
        f"WHERE NOT {is_reference.replace('seq', 'c.seq')}"
        ") AS a JOIN CameraEMData c ON c.DEF_id = a.seq"
    )
    for kind, table in ((1, "DarkImageData"), (2, "BrightImageData"), (0, "NormImageData")):
        cursor.execute(
            f"INSERT INTO {table} (DEF_id, DEF_timestamp, `REF|SessionData|session`, "
            "`REF|CameraEMData|camera`, filename, `MRC|image`) "
            f"SELECT (r.seq + 2) DIV 3, c.DEF_timestamp, c.`REF|SessionData|session`, c.DEF_id, "
            f"CONCAT(s.name, '_', LOWER(LEFT('{table}', 4)), '_', r.seq), "
            f"CONCAT(s.name, '_', LOWER(LEFT('{table}', 4)), '_', r.seq, '.mrc') "
            f"FROM seq_1_to_{REFERENCES} r JOIN CameraEMData c ON c.DEF_id = r.seq * {every} "
            "JOIN SessionData s ON s.DEF_id = c.`REF|SessionData|session` "
            f"WHERE r.seq MOD 3 = {kind}"
        )
    cursor.execute(
        "UPDATE NormImageData SET `REF|DarkImageData|dark` = DEF_id, "
        "`REF|BrightImageData|bright` = DEF_id"
    )


def _buffer_rows(cursor: pymysql.cursors.Cursor) -> None:
    cursor.execute(
        "INSERT INTO BufferHostData (DEF_timestamp, `REF|InstrumentData|ccdcamera`, "
        "`buffer hostname`, `buffer base path`, disabled, `append full head`) "
        "SELECT NOW() - INTERVAL 6 YEAR, DEF_id, 'buffer-01', '/bufferdata/frames', 0, 0 "
        f"FROM InstrumentData WHERE DEF_id <= {BUFFERED_CAMERAS}"
    )
    cursor.execute(
        "INSERT INTO BufferFramePathData (DEF_timestamp, `REF|SessionData|session`, "
        "`REF|BufferHostData|host`, `buffer frame path`) "
        "SELECT s.DEF_timestamp + INTERVAL 11 MINUTE, s.DEF_id, b.DEF_id, "
        "CONCAT('/bufferdata/frames', SUBSTRING(s.`image path`, LENGTH('/data/leginon') + 1)) "
        "FROM SessionData s JOIN BufferHostData b "
        f"ON b.`REF|InstrumentData|ccdcamera` = (s.DEF_id - 1) MOD {len(CAMERAS)} + 1 "
        "ORDER BY s.DEF_id"
    )


def build(server: MariaDBServer, images: int) -> None:
    """Create and fill `leginondb` on a running private server."""
    shape = Shape(images)
    connection = server.root()
    try:
        with connection.cursor() as cursor:
            _run(
                cursor,
                [
                    "SET GLOBAL key_buffer_size = 512 * 1024 * 1024",
                    "SET SESSION myisam_sort_buffer_size = 512 * 1024 * 1024",
                    "SET SESSION bulk_insert_buffer_size = 256 * 1024 * 1024",
                    f"DROP DATABASE IF EXISTS {DATABASE}",
                    f"CREATE DATABASE {DATABASE} CHARACTER SET latin1",
                    f"USE {DATABASE}",
                    *myisam_ddl().values(),
                    f"SET @end = UNIX_TIMESTAMP() - {shape.step_seconds}",
                ],
            )
            _instruments_and_sessions(cursor, shape)
            _exposures(cursor, shape)
            _buffer_rows(cursor)
            _grant(cursor, DATABASE)
            cursor.execute("FLUSH TABLES")
    finally:
        connection.close()


def build_indexed(server: MariaDBServer) -> None:
    """`leginondb_indexed`: leginondb's rows, and the frames-name index a facility may add."""
    connection = server.root()
    try:
        with connection.cursor() as cursor:
            _run(
                cursor,
                [
                    "SET SESSION myisam_sort_buffer_size = 512 * 1024 * 1024",
                    f"DROP DATABASE IF EXISTS {INDEXED_DATABASE}",
                    f"CREATE DATABASE {INDEXED_DATABASE} CHARACTER SET latin1",
                    f"USE {INDEXED_DATABASE}",
                ],
            )
            for table, statement in myisam_ddl().items():
                cursor.execute(statement)
                if table == "CameraEMData":
                    cursor.execute(FRAMES_NAME_INDEX_STATEMENT)  # built by sort, after the rows
                cursor.execute(f"INSERT INTO `{table}` SELECT * FROM {DATABASE}.`{table}`")
            _grant(cursor, INDEXED_DATABASE)
            cursor.execute("FLUSH TABLES")
    finally:
        connection.close()


def _grant(cursor: pymysql.cursors.Cursor, database: str) -> None:
    for host in ("localhost", "127.0.0.1"):
        cursor.execute(
            "CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (TEST_USER, host, TEST_PASSWORD)
        )
        cursor.execute(f"GRANT ALL ON `{database}`.* TO %s@%s", (TEST_USER, host))


def bring_forward(server: MariaDBServer, max_age: float = STALE_SECONDS) -> float:
    """Move every timestamp forward so the newest exposure is a few seconds old; returns the
    seconds moved (0 when the data were fresh enough)."""
    connection = server.root(DATABASE)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT TIMESTAMPDIFF(SECOND, MAX(DEF_timestamp), NOW()) FROM CameraEMData"
            )
            age = int(cursor.fetchone()[0] or 0)
            if age <= max_age:
                return 0.0
            cursor.execute("SET SESSION myisam_sort_buffer_size = 512 * 1024 * 1024")
            for database in (DATABASE, INDEXED_DATABASE):
                for table in TABLES_WITH_TIMESTAMPS:
                    name = f"{database}.`{table}`"
                    # the DEF_timestamp index is rebuilt by one sort, not row by row
                    cursor.execute(f"ALTER TABLE {name} DISABLE KEYS")
                    cursor.execute(
                        f"UPDATE {name} SET DEF_timestamp = DEF_timestamp + INTERVAL %s SECOND",
                        (age,),
                    )
                    cursor.execute(f"ALTER TABLE {name} ENABLE KEYS")
            cursor.execute("FLUSH TABLES")
            return float(age)
    finally:
        connection.close()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build_datadir(base: Path, images: int) -> BuildTimes:
    """A stopped server's datadir under `base`/data holding both databases."""
    server = MariaDBServer(base=base)
    server.start()
    try:
        started = time.monotonic()
        build(server, images)
        plain = time.monotonic() - started
        build_indexed(server)
        indexed = time.monotonic() - started - plain
    finally:
        server.stop()
    return BuildTimes(plain, indexed)


def _freshen(entry: Path) -> None:
    """Bring a cached build's timestamps forward, in the cache, when it is stale."""
    server = MariaDBServer(base=entry)
    server.start()
    try:
        bring_forward(server)
    finally:
        server.stop()


def cached_datadir(images: int) -> tuple[Path, BuildTimes, bool] | None:
    """(datadir, build times, built now) from the cache, building it there first when
    absent; None when the cache folder cannot be written."""
    try:
        CACHE_ROOT.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=".probe-", dir=CACHE_ROOT)
        os.rmdir(probe)
    except OSError:
        return None
    entry = CACHE_ROOT / f"leginondb-{images}-{cache_key()}"
    with _locked(CACHE_ROOT / f"leginondb-{images}.lock"):
        built_now = not (entry / "build.json").exists()
        if built_now:
            staging = Path(tempfile.mkdtemp(prefix=f".leginondb-{images}-", dir=CACHE_ROOT))
            times = _build_datadir(staging, images)
            (staging / "build.json").write_text(json.dumps(times.__dict__))
            for stale in CACHE_ROOT.glob(f"leginondb-{images}-*"):
                shutil.rmtree(stale, ignore_errors=True)  # an older generator's build
            staging.rename(entry)
        else:
            _freshen(entry)
        times = BuildTimes(**json.loads((entry / "build.json").read_text()))
    return entry / "data", times, built_now


def start_large_leginondb(images: int) -> LargeLeginonDB:
    """A running private server holding a copy of the `images`-size leginondb (and of
    leginondb_indexed)."""
    base = Path(tempfile.mkdtemp(prefix=f"embuffer-leginondb-{images}-"))
    cached = cached_datadir(images)
    if cached is None:
        times, built_now = _build_datadir(base, images), True
    else:
        datadir, times, built_now = cached
        shutil.copytree(datadir, base / "data", symlinks=True)
    server = MariaDBServer(base=base)
    server.start()
    bring_forward(server)
    return LargeLeginonDB(server, images, times, built_now)
