"""Job leases: at most one process renders a job at a time, across processes and hosts.

A job's lease lives in its work dir as numbered files, `lease.00000001.json`,
`lease.00000002.json`, ...; the highest number is the current lease. It names its holder (host,
pid, a token unique to the claim), when it started and its last heartbeat, or says it was
released. While a job renders, a background thread rewrites the heartbeat every few seconds.

Claiming a job means creating the NEXT number: when the current lease is released, stale or
absent, the claimant writes a complete file under a unique temporary name and hard-links it to
`lease.<n+1>.json`. `link(2)` fails when the name exists, so of any number of claimants racing
for the same job, whether it is free or its holder died, exactly one wins each number. Numbers
never go back, so a claimant that judged an old lease stale can never displace a newer one: it
only ever competes for the number after the one it judged. (Renaming a stale lease aside and
writing a new one in its place is not enough: a slow claimant can rename away the lease a faster
one just wrote, and a third can slip into the gap.) The winner then deletes the lower numbers.

Filesystem assumptions (local disk, or NFSv3+ with the output dir on one export):

- `link(2)` fails with EEXIST when the target exists. On NFS a lost reply to a retransmitted
  LINK can report failure for a link that was made; the claimant then checks its temporary's
  link count (2 means it won), as open(2) recommends.
- `rename(2)` within one directory atomically replaces its target (heartbeats and the released
  marker are written to a temporary and renamed into place, so readers see whole files).
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
import dataclasses
import json
import math
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from emo_cli.errors import RenderError, StorageError, describe_os_error
from emo_cli.execution.workdir import LEASE_FILE, lease_name, lease_temporary_name
from emo_cli.fsutil import atomic_write_text

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
    pid_namespace: str = ""  # containers sharing a host name can still have distinct pid spaces
    released: bool = False

    @property
    def holder(self) -> str:
        return f"{self.host}:{self.pid}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LeaseInfo:
        """Raises ValueError (or KeyError, TypeError, AttributeError) for anything but a lease."""
        doc = json.loads(text)
        info = cls(
            host=str(doc["host"]),
            pid=int(doc["pid"]),
            token=str(doc["token"]),
            started=float(doc["started"]),
            heartbeat=float(doc["heartbeat"]),
            pid_namespace=str(doc.get("pid_namespace", "")),
            released=bool(doc.get("released", False)),
        )
        if not (math.isfinite(info.started) and math.isfinite(info.heartbeat)):
            raise ValueError("a lease time that is not a number")
        return info


def lease_file(work_dir: Path | str, generation: int) -> Path:
    return Path(work_dir) / lease_name(generation)


def current_generation(work_dir: Path | str) -> int:
    """The highest lease number in `work_dir`; 0 when the job was never leased."""
    try:
        names = os.listdir(work_dir)
    except FileNotFoundError:
        return 0
    numbers = [int(m.group(1)) for m in map(LEASE_FILE.fullmatch, names) if m]
    return max(numbers, default=0)


def read_current(work_dir: Path | str, now: float | None = None) -> tuple[int, LeaseInfo | None]:
    """(number, lease) of the current lease; (0, None) when there is none.

    An unreadable file (corruption, a hand edit: leases are always written whole) is described
    by its mtime, so it counts as held until it is older than the timeout.
    """
    while True:
        generation = current_generation(work_dir)
        if generation == 0:
            return 0, None
        path = lease_file(work_dir, generation)
        try:
            mtime = path.lstat().st_mtime
            data: bytes | None = path.read_bytes()
        except FileNotFoundError:  # a newer claimant cleaned it up: look again
            continue
        except OSError:  # a folder or something else unreadable under a lease's name
            data = None
        beat = mtime if now is None else min(mtime, now)
        unreadable = LeaseInfo(host="?", pid=0, token="unreadable", started=mtime, heartbeat=beat)
        try:
            info = LeaseInfo.from_json(data.decode("utf-8")) if data is not None else unreadable
        except (ValueError, KeyError, TypeError, AttributeError):  # UnicodeDecodeError is a ValueError
            return generation, unreadable
        if now is not None and info.heartbeat > now + DEFAULT_TIMEOUT_S:
            # A heartbeat from the future (a hand edit, a clock far ahead) would hold the job
            # forever: judge the lease by when its file was last written instead.
            info = dataclasses.replace(info, heartbeat=beat)
        return generation, info


def read_lease(work_dir: Path | str) -> LeaseInfo | None:
    """Who holds the job, or None if it is free (never leased, or released)."""
    _, info = read_current(work_dir)
    return None if info is None or info.released else info


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


def pid_namespace() -> str:
    """This process's pid namespace ("pid:[4026531836]" on Linux), "" where there is none."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def is_stale(info: LeaseInfo, *, host: str, now: float, timeout_s: float) -> bool:
    """A lease is stale when its holder is a dead process on this host, or its heartbeat is old.

    The pid is only checked when the holder shares this host name and pid namespace (two
    containers with the host's name see different pids). The heartbeat test applies to every
    holder: it also covers a pid reused by an unrelated process after the holder died.
    """
    if info.host == host and info.pid_namespace == pid_namespace() and not pid_alive(info.pid):
        return True
    return now - info.heartbeat > timeout_s


class JobLease:
    """A claim on one job's work dir. Create with `acquire`; give it back with `release`."""

    def __init__(
        self,
        work_dir: Path,
        generation: int,
        info: LeaseInfo,
        *,
        timeout_s: float,
        clock: Clock,
        took_over: LeaseInfo | None,
    ):
        self.work_dir = work_dir
        self.generation = generation
        self.path = lease_file(work_dir, generation)
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
    def claim(cls, work_dir: Path | str, **options: Any) -> JobLease | None:
        """`acquire`, with a file system that refuses the lease (full, read-only) reported as a
        `StorageError` naming the file and what to do."""
        try:
            return cls.acquire(work_dir, **options)
        except OSError as exc:
            raise StorageError(f"cannot claim the job's lease: {describe_os_error(exc)}") from exc

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
        generation, current = read_current(work_dir, now)
        took_over: LeaseInfo | None = None
        if current is not None and not current.released:
            if not is_stale(current, host=host, now=now, timeout_s=timeout_s):
                return None
            took_over = current
        info = LeaseInfo(
            host=host,
            pid=pid,
            token=secrets.token_hex(8),
            started=now,
            heartbeat=now,
            pid_namespace=pid_namespace(),
        )
        if not claim_next(work_dir, generation, info):
            return None
        lease = cls(work_dir, generation + 1, info, timeout_s=timeout_s, clock=clock, took_over=took_over)
        interval = min(5.0, timeout_s / 6) if heartbeat_s is None else heartbeat_s
        if interval > 0:
            lease._thread = threading.Thread(
                target=lease._beat, args=(interval,), name=f"lease-heartbeat-{work_dir.name}", daemon=True
            )
            lease._thread.start()
        return lease

    @property
    def lost(self) -> bool:
        """True once a heartbeat found a newer lease on the job (this one was taken over)."""
        return self._lost

    def refresh(self, now: float | None = None) -> bool:
        """Rewrite the heartbeat (atomically); False, and `lost` set, if the lease is not current."""
        with self._lock:
            if self._released or self._lost:
                return False
            if current_generation(self.work_dir) != self.generation:
                self._lost = True
                return False
            beat = self._clock() if now is None else now
            self.info = dataclasses.replace(self.info, heartbeat=beat)
            atomic_write_text(self.path, self.info.to_json())
            return True

    def release(self) -> None:
        """Give the job back: stop the heartbeat and mark the lease released if it is current."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            if self._released:
                return
            self._released = True
            if self._lost or current_generation(self.work_dir) != self.generation:
                return
            # The file stays, marked released, so that lease numbers never go back.
            self.info = dataclasses.replace(self.info, released=True, heartbeat=self._clock())
            atomic_write_text(self.path, self.info.to_json())

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


# The claim this process renders each job under: work dir -> token. Set by whoever claimed the
# lease for the render (the pool for its workers, the inline executor, a Ray actor).
_rendering_under: dict[Path, str] = {}


@contextlib.contextmanager
def rendering_under(work_dir: Path | str, token: str) -> Iterator[None]:
    """While the block runs, `check_still_held(work_dir)` requires the lease with `token`."""
    key = Path(work_dir)
    _rendering_under[key] = token
    try:
        yield
    finally:
        _rendering_under.pop(key, None)


def check_still_held(work_dir: Path | str) -> None:
    """Before writing the journal or publishing: stop if another process took the job over.

    A holder stalled past the timeout (SIGSTOP, a suspended VM) finds a newer lease when it
    wakes: it must not touch the files of the render that took over. Without a claim on record
    (a direct `render_job` call) there is nothing to check.

    Raises:
        LeaseLost: the current lease is not the one this process renders under.
    """
    token = _rendering_under.get(Path(work_dir))
    if token is None:
        return
    _, info = read_current(work_dir)
    if info is None or info.token != token or info.released:
        holder = info.holder if info is not None and not info.released else "another process"
        raise LeaseLost(f"this render stalled for longer than the lease timeout and {holder} took the job over "
                        f"(lease in {work_dir}); it stopped without touching that render's files", holder)  # fmt: skip


class LeaseLost(RenderError):
    """The job's lease was taken over while this process was stalled."""

    def __init__(self, message: str, holder: str) -> None:
        super().__init__(message)
        self.holder = holder


def claim_next(work_dir: Path | str, seen_generation: int, info: LeaseInfo) -> bool:
    """Create lease number `seen_generation + 1` holding `info`; True if this caller made it.

    Exactly one caller can create each number, and the claim only stands while its number is
    the highest. The winner deletes the older lease files.
    """
    work_dir = Path(work_dir)
    target = lease_file(work_dir, seen_generation + 1)
    tmp = work_dir / lease_temporary_name(info.token)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            os.write(fd, info.to_json().encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:  # a full disk: leave no temporary behind
        tmp.unlink(missing_ok=True)
        raise
    try:
        try:
            os.link(tmp, target)
            won = True
        except FileExistsError:
            # NFS: the LINK may have succeeded even though its reply was lost.
            won = os.stat(tmp).st_nlink == 2
    finally:
        tmp.unlink(missing_ok=True)
    if won and current_generation(work_dir) != seen_generation + 1:
        # A claimant so slow that the number it saw was superseded and cleaned up meanwhile has
        # just re-created an old number: a newer lease exists, so this claim loses.
        target.unlink(missing_ok=True)
        return False
    if won:
        for name in os.listdir(work_dir):
            match = LEASE_FILE.fullmatch(name)
            if match and int(match.group(1)) <= seen_generation:
                old = work_dir / name
                if old.is_dir() and not old.is_symlink():
                    shutil.rmtree(old, ignore_errors=True)
                with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                    old.unlink()
    return won
