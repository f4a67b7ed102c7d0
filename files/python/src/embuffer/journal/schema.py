"""The journal's schema of version 1 (migrations.py): the tables and indexes, and the columns
that journals of earlier releases gained one by one, in the order they were added.

Migration 1 creates from these whatever a journal lacks, and so does every new journal, so
they are never changed again: a later change of the schema is a migration of its own."""

from __future__ import annotations

SCHEMA = """
CREATE TABLE IF NOT EXISTS movies (
  id INTEGER PRIMARY KEY,
  camera TEXT NOT NULL,              -- InstrumentData.hostname; 'adopted' for archive adoptions
  source_path TEXT,                  -- path on the camera share
  kind TEXT NOT NULL DEFAULT 'file', -- 'file' or 'dir' (DE .frames folders)
  state TEXT NOT NULL,
  size INTEGER,                      -- bytes (sum of members for a folder)
  source_mtime_ns INTEGER,
  hash TEXT,                         -- xxh3-128 hex; for folders, over the manifest
  manifest TEXT,                     -- JSON [[relpath, size, hash], ...] for folders
  first_seen REAL NOT NULL,
  closed_at REAL,                    -- the camera's last write (source mtime)
  copy_started_at REAL,
  buffer_visible_at REAL,
  verified_at REAL,
  source_removed_at REAL,
  image_table TEXT, image_id INTEGER, image_filename TEXT,
  session_id INTEGER, session_name TEXT,
  norm_id INTEGER, dark_id INTEGER,
  target TEXT,                       -- 'buffer' or 'quarantine': where dest_path lives
  dest_path TEXT,                    -- final path on the buffer (or in quarantine)
  rel_path TEXT,                     -- dest_path relative to the buffer root
  uid INTEGER, gid INTEGER,
  reason TEXT,                       -- why quarantined / last error
  attempts INTEGER NOT NULL DEFAULT 0,
  primary_path TEXT, primary_hash TEXT, primary_size INTEGER, primary_verified_at REAL,
  archive_error TEXT,
  purged_at REAL, purge_evidence TEXT
);
CREATE TABLE IF NOT EXISTS held_files (  -- camera files that failed repeatedly: kept, retried
  camera TEXT NOT NULL,
  source_path TEXT NOT NULL,
  failures INTEGER NOT NULL,
  first_failed_at REAL NOT NULL,
  last_failed_at REAL NOT NULL,
  held_since REAL,                   -- NULL until the failures reach the hold limit
  last_error TEXT NOT NULL,
  PRIMARY KEY (camera, source_path)
);
CREATE INDEX IF NOT EXISTS movies_active ON movies(camera, source_path, state);
CREATE INDEX IF NOT EXISTS movies_state ON movies(state);
CREATE INDEX IF NOT EXISTS movies_camera_state ON movies(camera, state);
CREATE INDEX IF NOT EXISTS movies_rel ON movies(rel_path);
CREATE INDEX IF NOT EXISTS movies_archive ON movies(primary_verified_at, state);
CREATE INDEX IF NOT EXISTS movies_purge ON movies(state, COALESCE(verified_at, first_seen), id);
CREATE INDEX IF NOT EXISTS movies_dest ON movies(dest_path);
CREATE INDEX IF NOT EXISTS movies_session ON movies(session_name);
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY,
  at REAL NOT NULL,
  movie_id INTEGER,
  camera TEXT,
  action TEXT NOT NULL,
  bytes INTEGER,
  detail TEXT
);
CREATE INDEX IF NOT EXISTS events_action_at ON events(action, at);
CREATE INDEX IF NOT EXISTS events_action_camera_at ON events(action, camera, at);
CREATE TABLE IF NOT EXISTS camera_files (  -- settled camera files waiting on the share
  camera TEXT NOT NULL,
  source_path TEXT NOT NULL,
  kind TEXT NOT NULL,                -- 'file' or 'dir'
  size INTEGER NOT NULL,             -- the directory entry as it was judged (settle.py)
  mtime_ns INTEGER NOT NULL,
  entries INTEGER NOT NULL,
  complete INTEGER,                  -- structure verdict: 1 whole, 0 not, NULL no check
  verdict_reason TEXT NOT NULL,
  expected_size INTEGER,
  frames INTEGER,
  settled_at REAL NOT NULL,          -- when ingest judged it settled
  looks INTEGER NOT NULL,            -- lookups that left it waiting (the backoff step)
  next_look_at REAL NOT NULL,        -- when it is due again
  PRIMARY KEY (camera, source_path)
);
CREATE TABLE IF NOT EXISTS camera_load (  -- cumulative costs of each camera's ingest
  camera TEXT NOT NULL,
  counter TEXT NOT NULL,             -- ingest/load.py names them
  total REAL NOT NULL,
  updated_at REAL NOT NULL,
  PRIMARY KEY (camera, counter)
);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS session_flags (session_name TEXT PRIMARY KEY, keep INTEGER NOT NULL);
"""


# Columns added to `movies` before the journal had versions, with their types.
ADDED_COLUMNS = (
    ("instrument_id", "INTEGER"),  # InstrumentData row of the camera (outage registration)
    ("frame_path_registered", "INTEGER"),  # 0: buffer frame path to record for Appion; 1: done
    ("buffer_mtime_ns", "INTEGER"),  # the buffer copy's mtime when verified (purge re-checks)
    # What a user cannot put back, of the buffer copy whose bytes went to primary (taken by the
    # archive before it read them; for a folder the newest ctime of it and its members):
    # purge re-hashes a copy whose identity changed, or that has none recorded (older rows).
    ("buffer_ctime_ns", "INTEGER"),
    ("buffer_inode", "INTEGER"),
    ("buffer_device", "INTEGER"),
)
