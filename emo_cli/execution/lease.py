"""Job leases: at most one process renders a job at a time, across processes and hosts.

A lease is the file `<work_dir>/lease.json` naming its holder (host, pid, token), when it
started and its last heartbeat. While a job renders, a background thread rewrites the
heartbeat every few seconds.

Filesystem assumptions (local disk, or NFSv3+ with the output dir on one export):

- `link(2)` fails with EEXIST when the target exists. A lease is claimed by writing a
  complete file under a unique temporary name and hard-linking it to `lease.json`, so the
  lease appears whole or not at all and exactly one claimant's link succeeds. On NFS a lost
  reply to a retransmitted LINK can report failure for a link that was made; the claimant
  then checks its temporary's link count (2 means it won), as open(2) recommends.
- `rename(2)` within one directory is atomic and fails with ENOENT when the source is gone.
  A stale lease is taken over by renaming it to a name unique to the claimant first: of two
  processes racing for the same stale lease only one rename succeeds, and the winner checks
  that what it moved is the lease it judged stale before it claims the job.
- Host clocks agree to well within `timeout_s` (NTP), since heartbeats from other hosts are
  compared with the local clock.

Object stores mounted through FUSE (S3, GCS) provide neither atomic rename nor exclusive
links: do not put an output dir there.

A lease is not a fencing token: a holder that stalls for longer than `timeout_s` (suspended
VM, frozen NFS mount) can be taken over. It notices at its next heartbeat (`lost` turns
true) and must stop; chunk writes are atomic, so the worst outcome is a chunk rendered twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from emo_cli.fsutil import atomic_write_text

LEASE_NAME = "lease.json"
DEFAULT_TIMEOUT_S = 60.0

Clock = Callable[[], float]


@dataclass(frozen=True)
class LeaseInfo:
    """What a lease file says about its holder."""

    host: str
    pid: int
    token: str  # unique per claim: tells one claim from another by the same process
    started: float  # seconds since the epoch
    heartbeat: float

    @property
    def holder(self) -> str:
        return f"{self.host}:{self.pid}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LeaseInfo:
        doc = json.loads(text)
        return cls(
            host=str(doc["host"]),
            pid=int(doc["pid"]),
            token=str(doc["token"]),
            started=float(doc["started"]),
            heartbeat=float(doc["heartbeat"]),
        )


def lease_path(work_dir: Path | str) -> Path:
    return Path(work_dir) / LEASE_NAME


def read_lease(work_dir: Path | str) -> LeaseInfo | None:
    """The lease on a job, or None if the job is free (no lease, or an unreadable one)."""
    try:
        return LeaseInfo.from_json(lease_path(work_dir).read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def is_stale(info: LeaseInfo, *, host: str, now: float, timeout_s: float) -> bool:
    """A lease is stale when its holder is a dead process on this host, or its heartbeat is old.

    The heartbeat test applies to every host, this one included: it also covers a pid that was
    reused by an unrelated process after the holder died.
    """
    if info.host == host and not pid_alive(info.pid):
        return True
    return now - info.heartbeat > timeout_s


class JobLease:
    """A claim on one job's work dir. Create with `acquire`; give it back with `release`."""

    def __init__(
        self, work_dir: Path, info: LeaseInfo, *, timeout_s: float, clock: Clock, took_over: LeaseInfo | None
    ):
        self.work_dir = work_dir
        self.path = lease_path(work_dir)
        self.info = info
        self.timeout_s = timeout_s
        self.took_over = took_over  # the stale lease this claim replaced, if any
        self._clock = clock
        self._lock = threading.Lock()
        self._lost = False
        self._released = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def acquire(
        cls,
        work_dir: Path | str,
        *,
        host: str | None = None,
        pid: int | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        heartbeat_s: float | None = None,
        clock: Clock = time.time,
    ) -> JobLease | None:
        """Claim the job in `work_dir`, or return None if a live holder has it.

        A stale lease (see `is_stale`) is taken over. `heartbeat_s` is how often a background
        thread refreshes the lease (default: a sixth of `timeout_s`, at most 5 s); 0 starts no
        thread, and the caller refreshes with `refresh()` (tests pass an explicit `clock`).
        """
        work_dir = Path(work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        host = host if host is not None else socket.gethostname()
        pid = pid if pid is not None else os.getpid()
        now = clock()
        info = LeaseInfo(host=host, pid=pid, token=secrets.token_hex(8), started=now, heartbeat=now)

        took_over: LeaseInfo | None = None
        if not _link_new(work_dir, info):
            current = read_lease(work_dir)
            if current is None:
                current = _unreadable_lease(work_dir, now)
                if current is None:  # released between our link and our read: try once more
                    if not _link_new(work_dir, info):
                        return None
                    return cls._start(work_dir, info, timeout_s, heartbeat_s, clock, None)
            if not is_stale(current, host=host, now=now, timeout_s=timeout_s):
                return None
            if not take_over(work_dir, current, info):
                return None
            took_over = current
        return cls._start(work_dir, info, timeout_s, heartbeat_s, clock, took_over)

    @classmethod
    def _start(
        cls,
        work_dir: Path,
        info: LeaseInfo,
        timeout_s: float,
        heartbeat_s: float | None,
        clock: Clock,
        took_over: LeaseInfo | None,
    ) -> JobLease:
        lease = cls(work_dir, info, timeout_s=timeout_s, clock=clock, took_over=took_over)
        interval = min(5.0, timeout_s / 6) if heartbeat_s is None else heartbeat_s
        if interval > 0:
            lease._thread = threading.Thread(
                target=lease._beat, args=(interval,), name=f"lease-heartbeat-{work_dir.name}", daemon=True
            )
            lease._thread.start()
        return lease

    @property
    def lost(self) -> bool:
        """True once a heartbeat found the lease file no longer ours (taken over or removed)."""
        return self._lost

    def refresh(self, now: float | None = None) -> bool:
        """Rewrite the heartbeat (atomically); False, and `lost` set, if the lease is not ours."""
        with self._lock:
            if self._released or self._lost:
                return False
            current = read_lease(self.work_dir)
            if current is None or current.token != self.info.token:
                self._lost = True
                return False
            beat = self._clock() if now is None else now
            self.info = LeaseInfo(self.info.host, self.info.pid, self.info.token, self.info.started, beat)
            atomic_write_text(self.path, self.info.to_json())
            return True

    def release(self) -> None:
        """Give the job back: stop the heartbeat and remove the lease if it is still ours."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            if self._released:
                return
            self._released = True
            if self._lost:
                return
            # Move the lease aside before deleting it so that a lease another process claimed
            # meanwhile is never the one removed.
            aside = self.work_dir / f".{LEASE_NAME}.released.{self.info.token}"
            try:
                os.rename(self.path, aside)
            except FileNotFoundError:
                return
            moved = _read_info(aside)
            if moved is not None and moved.token != self.info.token:
                _restore(aside, self.path)
            else:
                aside.unlink(missing_ok=True)

    def __enter__(self) -> JobLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _beat(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                if not self.refresh():
                    return
            except OSError:  # a transient NFS error: try again at the next beat
                continue


def take_over(work_dir: Path | str, stale: LeaseInfo, claim: LeaseInfo) -> bool:
    """Replace the lease `stale` (as read by the caller) with `claim`; True if this caller won.

    The stale lease is first renamed to a name unique to this claim: when several processes
    race, only one rename succeeds. The winner then checks that the file it moved is the very
    lease it judged stale; if another claimant replaced it in between, the moved lease is put
    back and this caller loses.
    """
    work_dir = Path(work_dir)
    path = lease_path(work_dir)
    tombstone = work_dir / f".{LEASE_NAME}.stale.{claim.token}"
    try:
        os.rename(path, tombstone)
    except FileNotFoundError:
        return False
    moved = _read_info(tombstone)
    if moved is not None and moved.token != stale.token:
        _restore(tombstone, path)
        return False
    tombstone.unlink(missing_ok=True)
    return _link_new(work_dir, claim)


def _link_new(work_dir: Path, info: LeaseInfo) -> bool:
    """Create the lease file holding `info` if there is none; True on success."""
    tmp = work_dir / f".{LEASE_NAME}.{info.token}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, info.to_json().encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        try:
            os.link(tmp, lease_path(work_dir))
            return True
        except FileExistsError:
            # NFS: the LINK may have succeeded even though its reply was lost.
            return os.stat(tmp).st_nlink == 2
    finally:
        tmp.unlink(missing_ok=True)


def _restore(moved: Path, path: Path) -> None:
    """Put a lease moved aside by mistake back, unless a new lease already took its place."""
    with contextlib.suppress(FileExistsError):
        os.link(moved, path)
    moved.unlink(missing_ok=True)


def _read_info(path: Path) -> LeaseInfo | None:
    try:
        return LeaseInfo.from_json(path.read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _unreadable_lease(work_dir: Path, now: float) -> LeaseInfo | None:
    """A lease file that exists but cannot be parsed, described by its mtime; None if gone.

    Leases are written whole, so this only happens after disk corruption or a hand edit; such
    a lease counts as held until its mtime is older than the timeout.
    """
    path = lease_path(work_dir)
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    return LeaseInfo(host="?", pid=0, token="unreadable", started=mtime, heartbeat=min(mtime, now))
