"""A FUSE filesystem that behaves like a disk under a power cut: it keeps only what was synced.

The model (harsh on purpose: wherever real filesystems may go either way, it takes the side
that loses more, the way LazyFS and CrashMonkey do):

- Programs see every write and every change of names at once (the "page cache").
- What survives a cut (the "device") changes only at a sync:
  - fsync/fdatasync of a FILE makes its data, size and attributes durable, NOT its name: a
    new file fsynced in a folder that was never fsynced since is gone after a cut;
  - fsync of a FOLDER makes its list of names durable (create, mkdir, link, unlink, rename,
    rmdir in that folder), and the attributes (chmod, chown, times) of what it names; a
    file that gets a durable name without ever having been fsynced itself comes back EMPTY
    (what XFS and ext4 with delayed allocation can leave after a crash);
  - a rename between two folders is durable in each folder when that folder is fsynced;
  - `sync()` (looking up the control name `/.powercut-sync-*`) makes everything durable, as
    sync(2)/syncfs(2) would. The kernel does not pass sync(2) or syncfs(2) on to a FUSE
    daemon (only virtiofs gets them), so a program's own sync() never reaches this model;
    nothing in embuffer calls it.
- Overwrites that were not synced are lost whole (no torn pages), and the device never
  reorders what was synced.
- A cut (at a cut point, see below, or by looking up `/.powercut-cut-*`): from that instant
  every request fails with EIO and changes nothing; what was
  durable is written to the image file, and the next mount starts from that image (files
  whose names never became durable are gone). A clean unmount is a shutdown: everything
  becomes durable.

Cut points: the model counts the requests at which a cut can make a difference: fsync of a
file or a folder, rename, link and unlink, and every open and create. Durable state changes
only at syncs; the others mark the moments in between, when programs act on other machines
(the archive reads the buffer and syncs nothing there until it exits: its opens are what
put cut points between its movies). `cut_at=N` cuts just BEFORE the
N-th of them is carried out, after SIGKILLing the process that sent it (a power cut stops
the program too; killing it before its request fails keeps it from acting on the failure on
the camera share or primary storage, which are other machines and keep running).

It runs as a program of its own (`python powercut_fs.py MOUNT IMAGE [--cut-at N] [--log
FILE]`; `Server` starts one for a test): libfuse installs signal handlers and threads that
have no place in the pytest process, and a cut then ends the filesystem's process as the
power would. Binding: mfusepy (ctypes over libfuse3's high-level API: nothing to compile,
maintained; fusepy knows only libfuse2, pyfuse3 needs a compiler, libfuse3-dev and trio).
Not modelled: rename flags (mfusepy drops RENAME_NOREPLACE), O_SYNC opens, xattrs, torn
writes inside a page.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import os
import pickle
import re
import signal
import stat
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# mfusepy takes libfuse2 when both are installed (smbnetfs, for the camera-share tests, brings
# libfuse2), and libfuse2's mount refuses a mount point that is not empty: ask for libfuse3.
os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")

ROOT = 1
CONTROL_SYNC = ".powercut-sync-"  # looking up a name starting so makes everything durable
CONTROL_CUT = ".powercut-cut-"  # ... and one starting so cuts the power (nobody is killed)


@dataclass
class Node:
    """An inode: a file (data), a folder (entries: name -> inode number) or a symlink."""

    mode: int
    uid: int = 0
    gid: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    atime_ns: int = 0
    data: bytearray = field(default_factory=bytearray)
    entries: dict[str, int] = field(default_factory=dict)
    target: str = ""
    nlink: int = 0

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    def attributes_from(self, other: Node) -> None:
        self.mode, self.uid, self.gid = other.mode, other.uid, other.gid
        self.mtime_ns, self.ctime_ns, self.atime_ns = other.mtime_ns, other.ctime_ns, other.atime_ns


class Cut(Exception):
    """Raised inside a request that the cut stopped."""


class Model:
    """Both states of the disk: `nodes` (what programs see) and `durable` (what a cut keeps).
    Thread-safe: libfuse calls in from several threads; one lock serialises everything."""

    def __init__(self, durable: dict[int, Node] | None = None, next_ino: int = ROOT + 1) -> None:
        self.lock = threading.RLock()
        if durable is None:
            now = time.time_ns()
            durable = {ROOT: Node(stat.S_IFDIR | 0o755, mtime_ns=now, ctime_ns=now)}
        self.durable = _reachable(durable)
        self.nodes = copy.deepcopy(self.durable)
        self.next_ino = next_ino
        self.open_count: dict[int, int] = {}
        self.candidates = 0
        self.cut_at: int | None = None
        # or by what the cut point does: at the first one matching `cut_on` that comes after
        # one matching `cut_after` (regular expressions over "op path"), for regression tests
        self.cut_after: str | None = None
        self.cut_on: str | None = None
        self._armed = False
        self.cut_done = False
        self.on_cut: Any = None  # called with the request's pid when the cut fires
        self.log: Any = None  # file: one line per cut point
        _count_links(self.nodes)

    # ---- image -------------------------------------------------------------------------
    def save(self, image: Path, *, everything: bool) -> None:
        """Write the device (or, at a clean unmount, everything) to `image`, atomically."""
        with self.lock:
            state = self.nodes if everything else self.durable
            # plain tuples: the image is read by a process that may name this module otherwise
            frozen = {
                ino: (
                    n.mode,
                    n.uid,
                    n.gid,
                    n.mtime_ns,
                    n.ctime_ns,
                    n.atime_ns,
                    bytes(n.data),
                    dict(n.entries),
                    n.target,
                )
                for ino, n in _reachable(state).items()
            }
            payload = pickle.dumps((frozen, self.next_ino))
        temp = image.with_name(image.name + ".tmp")
        temp.write_bytes(payload)
        os.replace(temp, image)

    @classmethod
    def load(cls, image: Path) -> Model:
        if not image.exists():
            return cls()
        frozen, next_ino = pickle.loads(image.read_bytes())
        durable = {
            ino: Node(mode, uid, gid, mtime, ctime, atime, bytearray(data), entries, target)
            for ino, (mode, uid, gid, mtime, ctime, atime, data, entries, target) in frozen.items()
        }
        return cls(durable, next_ino)

    # ---- cut points ----------------------------------------------------------------------
    def check(self) -> None:
        if self.cut_done:
            raise Cut()

    def candidate(self, op: str, path: str) -> None:
        """Count a cut point; cut here (before the request takes effect) when it is the one."""
        self.check()
        self.candidates += 1
        pid = _caller_pid()
        if self.log is not None:
            self.log.write(f"{self.candidates} {op} {path} {pid}\n")
            self.log.flush()
        point = f"{op} {path}"
        hit = self.cut_at is not None and self.candidates >= self.cut_at
        if self.cut_on is not None:
            if self._armed and re.search(self.cut_on, point):
                hit = True
            elif re.search(self.cut_after or "", point):
                self._armed = True
        if hit:
            self.cut_done = True
            if self.on_cut is not None:
                self.on_cut(pid)
            raise Cut()

    # ---- syncs ---------------------------------------------------------------------------
    def sync_file(self, ino: int) -> None:
        node = self.nodes[ino]
        if node.is_dir:
            self.sync_dir(ino)
            return
        kept = copy.deepcopy(node)
        kept.entries = {}
        self.durable[ino] = kept

    def sync_dir(self, ino: int) -> None:
        node = self.nodes[ino]
        kept = self.durable.get(ino) or Node(node.mode)
        kept.attributes_from(node)
        kept.entries = dict(node.entries)
        self.durable[ino] = kept
        for child in node.entries.values():
            live = self.nodes[child]
            known = self.durable.get(child)
            if known is None:
                # a name made durable before the thing it names: an empty file, an empty
                # folder (its own names need its own fsync), a symlink whole
                known = Node(live.mode, target=live.target)
                self.durable[child] = known
            known.attributes_from(live)

    def sync_all(self) -> None:
        self.durable = copy.deepcopy(_reachable(self.nodes))

    # ---- namespace -----------------------------------------------------------------------
    def lookup(self, path: str) -> int:
        ino = ROOT
        for part in _parts(path):
            node = self.nodes[ino]
            if not node.is_dir:
                raise OSError(errno.ENOTDIR, path)
            if part.startswith(CONTROL_SYNC) and ino == ROOT:
                self.sync_all()
                raise OSError(errno.ENOENT, path)
            if part.startswith(CONTROL_CUT) and ino == ROOT:
                self.cut_done = True
                if self.on_cut is not None:
                    self.on_cut(0)
                raise Cut()
            try:
                ino = node.entries[part]
            except KeyError:
                raise OSError(errno.ENOENT, path) from None
        return ino

    def parent_of(self, path: str) -> tuple[int, str]:
        parts = _parts(path)
        if not parts:
            raise OSError(errno.EBUSY, path)
        parent = self.lookup("/" + "/".join(parts[:-1]))
        if not self.nodes[parent].is_dir:
            raise OSError(errno.ENOTDIR, path)
        return parent, parts[-1]

    def new_node(self, mode: int, uid: int, gid: int) -> int:
        now = time.time_ns()
        ino = self.next_ino
        self.next_ino += 1
        self.nodes[ino] = Node(mode, uid, gid, now, now, now)
        return ino

    def add_entry(self, parent: int, name: str, ino: int) -> None:
        folder = self.nodes[parent]
        if name in folder.entries:
            raise OSError(errno.EEXIST, name)
        folder.entries[name] = ino
        folder.mtime_ns = folder.ctime_ns = time.time_ns()
        self.nodes[ino].nlink += 1

    def remove_entry(self, parent: int, name: str) -> int:
        folder = self.nodes[parent]
        ino = folder.entries.pop(name)
        folder.mtime_ns = folder.ctime_ns = time.time_ns()
        node = self.nodes[ino]
        node.nlink -= 1
        node.ctime_ns = folder.mtime_ns
        self.forget_if_unused(ino)
        return ino

    def forget_if_unused(self, ino: int) -> None:
        if self.nodes[ino].nlink <= 0 and not self.open_count.get(ino):
            del self.nodes[ino]


def _parts(path: str) -> list[str]:
    return [part for part in path.split("/") if part]


def _reachable(nodes: dict[int, Node]) -> dict[int, Node]:
    """Only what a folder chain from the root still names (orphans do not survive)."""
    kept: dict[int, Node] = {}
    pending = [ROOT]
    while pending:
        ino = pending.pop()
        if ino in kept or ino not in nodes:
            continue
        node = nodes[ino]
        kept[ino] = node
        if node.is_dir:
            node.entries = {name: child for name, child in node.entries.items() if child in nodes}
            pending.extend(node.entries.values())
    return kept


def _count_links(nodes: dict[int, Node]) -> None:
    for node in nodes.values():
        node.nlink = 0
    nodes[ROOT].nlink = 1
    for node in nodes.values():
        for child in node.entries.values():
            nodes[child].nlink += 1


def _caller_pid() -> int:
    try:
        import mfusepy

        return int(mfusepy.fuse_get_context()[2])
    except Exception:  # outside a FUSE request (the self-tests of the model)
        return 0


# ---------------------------------------------------------------------------- FUSE side


def operations(model: Model) -> Any:
    """The mfusepy Operations object that serves `model`."""
    import mfusepy

    class PowerCutOperations(mfusepy.Operations):  # type: ignore[misc]
        use_ns = True

        def __init__(self) -> None:
            self.handles: dict[int, int] = {}
            self.next_fh = 1

        # every request: one at a time, none after a cut
        def _do(self, function: Any, *args: Any) -> Any:
            with model.lock:
                try:
                    model.check()
                    return function(*args)
                except Cut:
                    raise mfusepy.FuseOSError(errno.EIO) from None
                except OSError as error:
                    raise mfusepy.FuseOSError(error.errno or errno.EIO) from None

        def _ino(self, path: str | None, fh: int | None) -> int:
            if fh and fh in self.handles:
                return self.handles[fh]
            if path is None:
                raise OSError(errno.EBADF, "no path")
            return model.lookup(path)

        def _handle(self, ino: int) -> int:
            fh = self.next_fh
            self.next_fh += 1
            self.handles[fh] = ino
            model.open_count[ino] = model.open_count.get(ino, 0) + 1
            return fh

        def _close(self, fh: int) -> None:
            ino = self.handles.pop(fh, None)
            if ino is not None:
                model.open_count[ino] -= 1
                if ino in model.nodes:
                    model.forget_if_unused(ino)

        # ---- attributes
        def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
            def run() -> dict[str, Any]:
                ino = self._ino(path, fh)
                node = model.nodes[ino]
                size = len(node.data) if stat.S_ISREG(node.mode) else len(node.target)
                if node.is_dir:
                    size = 4096
                return {
                    "st_ino": ino,
                    "st_mode": node.mode,
                    "st_nlink": max(node.nlink, 1 if node.is_dir else 0),
                    "st_uid": node.uid,
                    "st_gid": node.gid,
                    "st_size": size,
                    "st_blocks": (size + 511) // 512,
                    "st_blksize": 4096,
                    "st_atime": node.atime_ns,
                    "st_mtime": node.mtime_ns,
                    "st_ctime": node.ctime_ns,
                }

            return self._do(run)  # type: ignore[no-any-return]

        def chmod(self, path: str, mode: int) -> int:
            def run() -> int:
                node = model.nodes[model.lookup(path)]
                node.mode = (node.mode & ~0o7777) | (mode & 0o7777)
                node.ctime_ns = time.time_ns()
                return 0

            return self._do(run)  # type: ignore[no-any-return]

        def chown(self, path: str, uid: int, gid: int) -> int:
            def run() -> int:
                node = model.nodes[model.lookup(path)]
                if uid != -1:
                    node.uid = uid
                if gid != -1:
                    node.gid = gid
                node.ctime_ns = time.time_ns()
                return 0

            return self._do(run)  # type: ignore[no-any-return]

        def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
            def run() -> int:
                node = model.nodes[model.lookup(path)]
                now = time.time_ns()
                node.atime_ns, node.mtime_ns = times if times else (now, now)
                node.ctime_ns = now
                return 0

            return self._do(run)  # type: ignore[no-any-return]

        def statfs(self, path: str) -> dict[str, int]:
            def run() -> dict[str, int]:
                used = sum(len(node.data) for node in model.nodes.values()) // 4096 + 1
                total = 1 << 20  # 4 GiB of 4 KiB blocks
                return {
                    "f_bsize": 4096,
                    "f_frsize": 4096,
                    "f_blocks": total,
                    "f_bfree": total - used,
                    "f_bavail": total - used,
                    "f_files": 1 << 20,
                    "f_ffree": (1 << 20) - len(model.nodes),
                    "f_namemax": 255,
                }

            return self._do(run)  # type: ignore[no-any-return]

        # ---- names
        def create(self, path: str, mode: int, flags: int = 0) -> int:
            def run() -> int:
                parent, name = model.parent_of(path)
                if name in model.nodes[parent].entries:
                    raise OSError(errno.EEXIST, path)
                model.candidate("create", path)
                uid, gid, _pid = mfusepy.fuse_get_context()
                ino = model.new_node(stat.S_IFREG | (mode & 0o7777), uid, gid)
                try:
                    model.add_entry(parent, name, ino)
                except OSError:
                    del model.nodes[ino]
                    raise
                return self._handle(ino)

            return self._do(run)  # type: ignore[no-any-return]

        def mkdir(self, path: str, mode: int) -> int:
            def run() -> int:
                parent, name = model.parent_of(path)
                uid, gid, _pid = mfusepy.fuse_get_context()
                ino = model.new_node(stat.S_IFDIR | (mode & 0o7777), uid, gid)
                model.add_entry(parent, name, ino)
                return 0

            return self._do(run)  # type: ignore[no-any-return]

        def symlink(self, target: str, source: str) -> int:
            def run() -> int:
                parent, name = model.parent_of(target)
                uid, gid, _pid = mfusepy.fuse_get_context()
                ino = model.new_node(stat.S_IFLNK | 0o777, uid, gid)
                model.nodes[ino].target = source
                model.add_entry(parent, name, ino)
                return 0

            return self._do(run)  # type: ignore[no-any-return]

        def readlink(self, path: str) -> str:
            return self._do(lambda: model.nodes[model.lookup(path)].target)  # type: ignore[no-any-return]

        def link(self, target: str, source: str) -> int:
            def run() -> int:
                ino = model.lookup(source)
                if model.nodes[ino].is_dir:
                    raise OSError(errno.EPERM, source)
                parent, name = model.parent_of(target)
                if name in model.nodes[parent].entries:
                    raise OSError(errno.EEXIST, target)
                model.candidate("link", f"{source} -> {target}")
                model.add_entry(parent, name, ino)
                model.nodes[ino].ctime_ns = time.time_ns()
                return 0

            return self._do(run)  # type: ignore[no-any-return]

        def unlink(self, path: str) -> int:
            def run() -> int:
                parent, name = model.parent_of(path)
                ino = model.nodes[parent].entries.get(name)
                if ino is None:
                    raise OSError(errno.ENOENT, path)
                if model.nodes[ino].is_dir:
                    raise OSError(errno.EISDIR, path)
                model.candidate("unlink", path)
                model.remove_entry(parent, name)
                return 0

            return self._do(run)  # type: ignore[no-any-return]

        def rmdir(self, path: str) -> int:
            def run() -> int:
                parent, name = model.parent_of(path)
                ino = model.nodes[parent].entries.get(name)
                if ino is None:
                    raise OSError(errno.ENOENT, path)
                node = model.nodes[ino]
                if not node.is_dir:
                    raise OSError(errno.ENOTDIR, path)
                if node.entries:
                    raise OSError(errno.ENOTEMPTY, path)
                model.remove_entry(parent, name)
                return 0

            return self._do(run)  # type: ignore[no-any-return]

        def rename(self, old: str, new: str) -> int:
            def run() -> int:
                old_parent, old_name = model.parent_of(old)
                new_parent, new_name = model.parent_of(new)
                ino = model.nodes[old_parent].entries.get(old_name)
                if ino is None:
                    raise OSError(errno.ENOENT, old)
                replaced = model.nodes[new_parent].entries.get(new_name)
                if replaced == ino:
                    return 0
                if replaced is not None:
                    victim = model.nodes[replaced]
                    if victim.is_dir != model.nodes[ino].is_dir:
                        raise OSError(errno.EISDIR if victim.is_dir else errno.ENOTDIR, new)
                    if victim.is_dir and victim.entries:
                        raise OSError(errno.ENOTEMPTY, new)
                model.candidate("rename", f"{old} -> {new}")
                if replaced is not None:
                    model.remove_entry(new_parent, new_name)
                model.nodes[ino].nlink += 1  # held while it moves
                model.remove_entry(old_parent, old_name)
                model.add_entry(new_parent, new_name, ino)
                model.nodes[ino].nlink -= 1
                return 0

            return self._do(run)  # type: ignore[no-any-return]

        def readdir(self, path: str, fh: int) -> list[tuple[str, dict[str, int], int]]:
            def run() -> list[tuple[str, dict[str, int], int]]:
                ino = self._ino(path, fh)
                node = model.nodes[ino]
                # with an inode number: readdir(3) skips entries whose d_ino is 0
                listing = [(".", {"st_mode": node.mode, "st_ino": ino}, 0)]
                listing.append(("..", {"st_mode": stat.S_IFDIR, "st_ino": ROOT}, 0))
                for name, child in node.entries.items():
                    listing.append((name, {"st_mode": model.nodes[child].mode, "st_ino": child}, 0))
                return listing

            return self._do(run)  # type: ignore[no-any-return]

        def opendir(self, path: str) -> int:
            return self._do(lambda: self._handle(model.lookup(path)))  # type: ignore[no-any-return]

        def releasedir(self, path: str | None, fh: int) -> int:
            with model.lock:
                self._close(fh)
            return 0

        # ---- data
        def open(self, path: str, flags: int) -> int:
            def run() -> int:
                ino = model.lookup(path)
                model.candidate("open", path)
                if flags & os.O_TRUNC and (flags & os.O_ACCMODE) != os.O_RDONLY:
                    node = model.nodes[ino]
                    node.data = bytearray()
                    node.mtime_ns = node.ctime_ns = time.time_ns()
                return self._handle(ino)

            return self._do(run)  # type: ignore[no-any-return]

        def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
            def run() -> bytes:
                node = model.nodes[self._ino(path, fh)]
                return bytes(node.data[offset : offset + size])

            return self._do(run)  # type: ignore[no-any-return]

        def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
            def run() -> int:
                node = model.nodes[self._ino(path, fh)]
                if offset > len(node.data):
                    node.data.extend(bytes(offset - len(node.data)))
                node.data[offset : offset + len(data)] = data
                node.mtime_ns = node.ctime_ns = time.time_ns()
                return len(data)

            return self._do(run)  # type: ignore[no-any-return]

        def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
            def run() -> int:
                node = model.nodes[self._ino(path, fh)]
                if length < len(node.data):
                    del node.data[length:]
                else:
                    node.data.extend(bytes(length - len(node.data)))
                node.mtime_ns = node.ctime_ns = time.time_ns()
                return 0

            return self._do(run)  # type: ignore[no-any-return]

        def flush(self, path: str | None, fh: int) -> int:
            return 0

        def release(self, path: str | None, fh: int) -> int:
            with model.lock:
                self._close(fh)
            return 0

        def fsync(self, path: str | None, datasync: int, fh: int) -> int:
            def run() -> int:
                ino = self._ino(path, fh)
                model.candidate("fsync", path or f"<fh {fh}>")
                model.sync_file(ino)
                return 0

            return self._do(run)  # type: ignore[no-any-return]

        def fsyncdir(self, path: str | None, datasync: int, fh: int) -> int:
            def run() -> int:
                ino = self._ino(path, fh)
                model.candidate("fsyncdir", path or f"<fh {fh}>")
                model.sync_dir(ino)
                return 0

            return self._do(run)  # type: ignore[no-any-return]

    return PowerCutOperations()


def serve(
    mount: Path,
    image: Path,
    *,
    cut_at: int | None = None,
    cut_after: str | None = None,
    cut_on: str | None = None,
    log: Path | None = None,
) -> int:
    """Mount `image` on `mount` and serve until unmounted. With `cut_at`, the N-th cut point
    cuts the power (see the top); leaving without a cut then also counts as one (the machine
    lost power while idle), so only what was synced is written back to `image`. Without
    `cut_at` an unmount is a clean shutdown: everything is written back."""
    import logging

    import mfusepy

    logging.getLogger("mfusepy").setLevel(logging.CRITICAL)  # EIO after a cut is expected
    model = Model.load(image)
    model.cut_at = cut_at
    model.cut_after, model.cut_on = cut_after, cut_on
    cutting = cut_at is not None or cut_on is not None
    model.log = open(log, "a", buffering=1) if log else None  # noqa: SIM115

    def on_cut(pid: int) -> None:
        model.save(image, everything=False)
        if model.log is not None:
            model.log.write(f"CUT {model.candidates} {pid}\n")
        if pid > 0 and pid != os.getpid():
            # the program stops with the power; SIGKILL to a thread id ends its whole process
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    model.on_cut = on_cut

    ops = operations(model)
    mfusepy.FUSE(
        ops,
        str(mount),
        foreground=True,
        nothreads=False,
        hard_remove=True,
        use_ino=True,
        fsname="powercut",
    )
    if not model.cut_done:
        model.save(image, everything=not cutting)
    if model.log is not None:
        model.log.close()
    return 0


class Server:
    """The filesystem served by a child process (`python powercut_fs.py`), for tests."""

    def __init__(self, mount: Path, image: Path, log: Path) -> None:
        self.mount, self.image, self.log = mount, image, log
        self.process: Any = None

    def start(self, *, cut_at: int | None, cut_on: tuple[str, str] | None = None) -> None:
        """`cut_on`: (after, on) patterns, see Model.cut_after."""
        import subprocess

        command = [sys.executable, __file__, str(self.mount), str(self.image)]
        command += ["--log", str(self.log)]
        if cut_at is not None:
            command += ["--cut-at", str(cut_at)]
        if cut_on is not None:
            command += ["--cut-after", cut_on[0], "--cut-on", cut_on[1]]
        with open(self.log.with_suffix(".fs"), "ab") as errors:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
        deadline = time.monotonic() + 20
        while not os.path.ismount(self.mount):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the power-cut filesystem did not mount: {self.log}.fs")
            time.sleep(0.01)

    def stop(self) -> None:
        """Unmount. After a cut, or with a cut point that never came (the power went while
        the machine was idle), only what was synced is kept; without one, everything."""
        import subprocess

        if self.process is None:
            return
        done = subprocess.run(["fusermount3", "-u", str(self.mount)], capture_output=True)
        if done.returncode != 0:  # still in use by a dying process: detach it anyway
            subprocess.run(["fusermount3", "-u", "-z", str(self.mount)], capture_output=True)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("mount", type=Path)
    parser.add_argument("image", type=Path)
    parser.add_argument("--cut-at", type=int)
    parser.add_argument("--cut-after", help="regular expression over 'op path'")
    parser.add_argument("--cut-on", help="regular expression over 'op path'")
    parser.add_argument("--log", type=Path)
    arguments = parser.parse_args()
    sys.exit(
        serve(
            arguments.mount,
            arguments.image,
            cut_at=arguments.cut_at,
            cut_after=arguments.cut_after,
            cut_on=arguments.cut_on,
            log=arguments.log,
        )
    )
