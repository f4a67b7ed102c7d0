"""A camera PC's movie folder served over a real SMB path, with the server's request counts.

`SmbCameraShare(root)` starts a Samba server of its own on loopback that exports a folder
(the camera PC's disk, `served`), mounts that share through smbnetfs, a FUSE SMB client, and
binds the share's folder at `camera` for the test or benchmark to use as the camera folder.
The server counts every request it answers (`smbd profiling level = on`); `request_counts()`
reads them (`smbstatus -P` against this server's own config), so a test can assert what a
stat, an open or a listing of the camera folder costs the camera PC.

Why it is put together this way:
- The server is Debian's smbd with its own smb.conf, port (a free high one), lock, state,
  cache, pid, private and log folders, bound to 127.0.0.1 alone, NetBIOS off; the system's
  smbd is never used (tools/setup-host.sh keeps Debian's package from starting it). Guests
  are mapped to the user running the tests (`force user`), as a CIFS mount's uid= does.
- The client is smbnetfs (FUSE 2 high-level API over libsmbclient). The kernel keeps what a
  stat said for `attr_timeout` and a looked-up name for `entry_timeout`, 1 s each (libfuse's
  default, written out): CIFS's default `actimeo=1`. smbnetfs reads `~/.smb/smbnetfs.conf`
  and libsmbclient `~/.smb/smb.conf`, so it runs with a HOME of its own under `root`.
- The port: libsmbclient ignores `smb ports` in the client's smb.conf (it tries 445, then
  139), and smbnetfs has no port option; but smbnetfs hands the path below its mount point
  to libsmbclient as the URL `smb://<path>`, which takes `host:port`. So smbnetfs shows the
  share at `<mnt>/127.0.0.1:<port>/camera` (`share_in_client`).
- The bind mount: embuffer opens a path one folder at a time from `/` (O_NOFOLLOW). Opening
  smbnetfs's server folder asks the server for its shares over RPC, which smbd answers by
  starting samba-dcerpcd, a daemon outside its process group that outlives it. A CIFS mount
  shows the share itself at the mount point; `camera`, bound to the share's folder, does
  the same, and this smbd starts no RPC helper (`rpc start on demand helpers = no`).
- smbnetfs forwards an extended-attribute listing to the server; a 64 KiB listing buffer
  (Python's os.listxattr asks for one after a 256-byte try) kills its worker for that
  server, and the share then reads as an I/O error until smbnetfs's negative cache expires
  (3 s). embuffer makes no such call; tests must not either.
- smbd writes its counters to a shared database about once a second: a count read at once
  after an action may not include it yet. `quiet_request_counts()` waits until the counts
  have stood still for longer than that.

What a request costs through this path (Samba 4.17, smbnetfs 0.6.3, caches expired): a stat
3 requests (create, getinfo, close; a missing name only the create); a listing 4 for a
small folder (create, two finds, close) and no attributes come with it, so a stat of each
listed name costs 3 more; open, read 1 KiB and close 7 (create, getinfo, close for the
lookup, then create, reads, close). The kernel's CIFS client starts a listing at the first
readdir; libsmbclient reads the whole listing when a folder is opened, so here an O_DIRECTORY
open of the camera folder costs a listing (create, finds, close).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

SHARE_NAME = "camera"
# libfuse's defaults, written out: what CIFS's actimeo=1 caches (module docstring)
CACHE_SECONDS = 1.0
# smbd dumps its profile counters about once a second
COUNTER_DUMP_SECONDS = 1.0
REQUIRED_PROGRAMS = ("smbd", "smbstatus", "smbnetfs", "fusermount")
_SMB2_COUNT = re.compile(r"^smb2_(\w+)_count:\s+(\d+)\s*$", re.MULTILINE)
_SMB2_READ_BYTES = re.compile(r"^smb2_read_outbytes:\s+(\d+)\s*$", re.MULTILINE)


class SmbUnavailable(RuntimeError):
    """This machine cannot run the rig (not root, a program missing, no /dev/fuse)."""


def unavailable_reason() -> str | None:
    """Why `SmbCameraShare` cannot run here, or None when it can (for pytest.skip)."""
    if os.geteuid() != 0:
        return "a private smbd needs root"
    missing = [program for program in REQUIRED_PROGRAMS if _program(program) is None]
    if missing:
        return f"{', '.join(missing)} not installed (bash tools/setup-host.sh installs them)"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse for the SMB client"
    return None


@dataclass(frozen=True)
class SmbRequests:
    """SMB2 requests the server answered, by operation (create, getinfo, close, find,
    read, write, ...), and the bytes its read replies carried: totals since the server
    started, or a difference of two readings."""

    by_operation: Mapping[str, int] = field(default_factory=dict)
    bytes_read: int = 0

    @property
    def total(self) -> int:
        return sum(self.by_operation.values())

    def __getitem__(self, operation: str) -> int:
        return self.by_operation.get(operation, 0)

    def __sub__(self, earlier: SmbRequests) -> SmbRequests:
        names = set(self.by_operation) | set(earlier.by_operation)
        return SmbRequests(
            {name: self[name] - earlier[name] for name in sorted(names)},
            self.bytes_read - earlier.bytes_read,
        )

    def nonzero(self) -> dict[str, int]:
        return {name: count for name, count in self.by_operation.items() if count}


def parse_profile(text: str) -> SmbRequests:
    """The SMB2 counts of `smbstatus -P` output (the `smb2_<op>_count:` lines)."""
    read = _SMB2_READ_BYTES.search(text)
    return SmbRequests(
        {match[1]: int(match[2]) for match in _SMB2_COUNT.finditer(text)},
        int(read[1]) if read else 0,
    )


class SmbCameraShare:
    """A private smbd exporting `served` and that share mounted through smbnetfs at
    `camera`; everything lives under `root` (module docstring). Use as a context manager:
    leaving it unmounts the share and stops both daemons, even after a failure."""

    def __init__(self, root: Path, served: Path | None = None) -> None:
        self.root = root
        self.served = served if served is not None else root / "served"
        self.port = _free_port()
        self.mountpoint = root / "mnt"
        # where smbnetfs shows the share, and the same folder bound where the test wants it
        self.share_in_client = self.mountpoint / f"127.0.0.1:{self.port}" / SHARE_NAME
        self.camera = root / "camera"
        self.config = root / "smb.conf"
        self.home = root / "client-home"
        self.logs = root / "log"
        self._smbd: subprocess.Popen[bytes] | None = None
        self._client: subprocess.Popen[bytes] | None = None

    # ---- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> SmbCameraShare:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise SmbUnavailable(reason)
        try:
            self._start_server(timeout)
            self._mount(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Unmount, then stop the client and the server with all their children."""
        if _mounted(self.camera):
            _unmount(["umount"], self.camera)
        if self._client is not None:
            if _mounted(self.mountpoint):
                _unmount(["fusermount", "-u"], self.mountpoint)
            _end_group(self._client)
            self._client = None
        if self._smbd is not None:
            _end_group(self._smbd)
            self._smbd = None

    def _start_server(self, timeout: float) -> None:
        for folder in ("lock", "state", "cache", "pid", "private", "ncalrpc", "binddns"):
            (self.root / "smbd" / folder).mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.served.mkdir(parents=True, exist_ok=True)
        self.config.write_text(self._server_config())
        # smbd forks one child per client connection: all of them in the group it leads
        self._smbd = self._spawn(
            ["smbd", "--foreground", "--no-process-group", f"--configfile={self.config}"]
            + [f"--log-basename={self.logs}"],
            "smbd.out",
        )
        deadline = time.monotonic() + timeout
        while not _listening(self.port):
            if self._smbd.poll() is not None:
                raise RuntimeError(f"smbd exited early:\n{self._log_tail('log.smbd')}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"smbd did not listen on {self.port} in {timeout:.0f} s")
            time.sleep(0.1)

    def _server_config(self) -> str:
        state = self.root / "smbd"
        user = pwd.getpwuid(os.getuid()).pw_name
        return f"""[global]
  server role = standalone server
  interfaces = 127.0.0.1
  bind interfaces only = yes
  smb ports = {self.port}
  disable netbios = yes
  lock directory = {state / "lock"}
  state directory = {state / "state"}
  cache directory = {state / "cache"}
  pid directory = {state / "pid"}
  private dir = {state / "private"}
  ncalrpc dir = {state / "ncalrpc"}
  binddns dir = {state / "binddns"}
  passdb backend = tdbsam:{state / "private" / "passdb.tdb"}
  max log size = 10000
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
  map to guest = Bad User
  guest account = {user}
  smbd profiling level = on
  # smbd would start samba-dcerpcd for RPC pipes, a daemon outside its process group
  rpc start on demand helpers = no

[{SHARE_NAME}]
  path = {self.served}
  read only = no
  guest ok = yes
  force user = {user}
  map archive = no
"""

    def _mount(self, timeout: float) -> None:
        smb_dir = self.home / ".smb"
        smb_dir.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        # libsmbclient's own settings for this client (module docstring)
        (smb_dir / "smb.conf").write_text("[global]\n  client min protocol = SMB2\n")
        client_config = smb_dir / "smbnetfs.conf"
        client_config.write_text(
            f'log_file "{self.logs / "smbnetfs.log"}"\n'
            # no browsing of the network and no keyring: the share's address is in the path
            'smb_query_browsers "false"\n'
            'use_libsecret "false"\n'
            # answer stat() for every name as the server does (no ENOENT for desktop files)
            'stat_workaround_enable_default_entries "false"\n'
            'stat_workaround_depth "0"\n'
        )
        for written in smb_dir.iterdir():
            written.chmod(0o600)  # smbnetfs ignores an auth section others could read
        options = f"config={client_config},attr_timeout={CACHE_SECONDS}"
        options += f",entry_timeout={CACHE_SECONDS},negative_timeout=0"
        self._client = self._spawn(
            ["smbnetfs", str(self.mountpoint), "-f", "-o", options],
            "smbnetfs.out",
            env={**os.environ, "HOME": str(self.home)},
        )
        self._wait_for_share(timeout)

    def _spawn(
        self, command: list[str], log_name: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """A daemon in the foreground, leading a process group of its own (stop() ends the
        whole group), its output appended to a log under `root`."""
        with open(self.logs / log_name, "ab") as output:
            return subprocess.Popen(
                [_program(command[0]) or command[0], *command[1:]],
                stdout=output,
                stderr=output,
                start_new_session=True,
                env=env,
            )

    def _wait_for_share(self, timeout: float) -> None:
        assert self._client is not None
        deadline = time.monotonic() + timeout
        while True:
            if self._client.poll() is not None:
                raise RuntimeError(f"smbnetfs exited early:\n{self._log_tail('smbnetfs.out')}")
            if _mounted(self.mountpoint):
                with contextlib.suppress(OSError):
                    os.listdir(self.share_in_client)
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.share_in_client} not readable in {timeout:.0f} s:\n"
                    f"{self._log_tail('smbnetfs.out')}"
                )
            time.sleep(0.2)
        self.camera.mkdir(exist_ok=True)
        subprocess.run(["mount", "--bind", str(self.share_in_client), str(self.camera)], check=True)

    def route_config(self, config_path: Path) -> None:
        """Point an embuffer.toml whose camera path is the served folder at the same folder
        through SMB. Call again after each rewrite of the file."""
        served_line = f'path = "{self.served}"'
        text = config_path.read_text()
        if served_line not in text:
            raise ValueError(f"{config_path} has no camera {served_line!r}")
        config_path.write_text(text.replace(served_line, f'path = "{self.camera}"'))

    def _log_tail(self, name: str) -> str:
        with contextlib.suppress(OSError):
            return (self.logs / name).read_text(errors="replace")[-3000:]
        return "(no log)"

    # ---- what the server answered ------------------------------------------------------
    def request_counts(self) -> SmbRequests:
        """SMB2 requests answered since the server started, as last dumped (<= 1 s old)."""
        result = subprocess.run(
            [_program("smbstatus") or "smbstatus", "--profile", f"--configfile={self.config}"],
            check=True,
            capture_output=True,
            text=True,
        )
        counts = parse_profile(result.stdout)
        if not counts.by_operation:
            raise RuntimeError(f"smbstatus -P printed no SMB2 counters:\n{result.stdout[:2000]}")
        return counts

    def quiet_request_counts(self, timeout: float = 20.0) -> SmbRequests:
        """The counts once they have stood still for longer than the server's dump interval:
        everything the clients asked so far is in them."""
        deadline = time.monotonic() + timeout
        last = self.request_counts()
        while time.monotonic() < deadline:
            time.sleep(COUNTER_DUMP_SECONDS * 1.5)
            now = self.request_counts()
            if now == last:
                return now
            last = now
        raise TimeoutError(f"SMB requests still arriving after {timeout:.0f} s")

    def process_groups(self) -> list[int]:
        """The process groups of the server and of the client (each leads its own)."""
        return [process.pid for process in (self._smbd, self._client) if process is not None]

    def smbd_cpu_seconds(self) -> float:
        """CPU time used by the server: all its processes, and the children it has reaped."""
        if self._smbd is None:
            return 0.0
        return _group_cpu_seconds(self._smbd.pid)

    def client_cpu_seconds(self) -> float:
        """CPU time used by smbnetfs (the FUSE client and its per-server workers)."""
        if self._client is None:
            return 0.0
        return _group_cpu_seconds(self._client.pid)


# ---- helpers ---------------------------------------------------------------------------
def _program(name: str) -> str | None:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _unmount(command: list[str], mountpoint: Path) -> None:
    if subprocess.run([*command, str(mountpoint)], check=False).returncode != 0:
        # busy (a file still open): detach it now, the kernel lets go when it is unused
        lazy = "-l" if command[0] == "umount" else "-z"
        subprocess.run([*command, lazy, str(mountpoint)], check=False)


def _mounted(mountpoint: Path) -> bool:
    target = str(mountpoint)
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == target for line in mounts)


def _end_group(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process group the process leads (children too, which may outlive the
    leader), SIGKILL what is left of it after `grace` seconds."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            process.poll()  # reap the leader, else it counts as a member
            if not _group_members(process.pid):
                return
            time.sleep(0.1)


def _group_members(group: int) -> list[int]:
    """Live processes of the group (zombies left to a parent that never reaps are not)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and int(fields[2]) == group and fields[0] != "Z":
                members.append(int(entry))
    return members


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name: [state, ppid, pgrp, ...]."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _group_cpu_seconds(group: int) -> float:
    ticks = 0
    for pid in _group_members(group):
        fields = _stat_fields(pid)
        if fields is not None:  # utime, stime, cutime, cstime: fields 14-17 of stat(5)
            ticks += sum(int(value) for value in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")
