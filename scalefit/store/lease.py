"""A per-run writer lease: one process at a time writes a run's chunks.

The lease is the file ``<run folder>/_lease.json`` (``_``: Parquet readers skip it) holding the owner
(a random token), its host and pid, and a heartbeat time that a daemon thread of the owner renews every
``stale_s / 4`` seconds. A lease is stale when its heartbeat is older than the holder's ``stale_s``
seconds (recorded in the lease), or at once when its owner is a process of this host that no longer
exists (a SIGKILLed trainer). Taking, renewing and releasing happen inside an exclusive
``fcntl.flock`` on ``<run folder>/_lease.lock`` (opened read-write, so that NFS clients, which emulate
flock with byte-range locks, lock it for every node), so two processes never both take one lease; the
lock is held for a file read and write only. Node clocks are assumed to agree to well within
``stale_s`` (NTP).

A second writer of a run that is leased and not stale either waits (``policy="wait"``: until the lease
is released or goes stale, then takes it over; at most ``wait_s`` seconds if given) or is refused at
once (``policy="refuse"``), with `RunLeaseError`. A writer whose lease was taken over (it was thought
dead) is refused at its next write (`RunLeaseError`), so it cannot interleave rows with the new owner.
A new lease of the same process takes over its older one (a process re-opening a run it wrote).

On an object store (a URI root, `scalefit.store.fs`) there is no flock: the lease object is created
only if absent (``If-None-Match: *``) and replaced only if unchanged since it was read (``If-Match`` on
its ETag), so of two processes taking, renewing or taking over one lease at once exactly one succeeds
and the other reads the lease again (on s3://; other URI schemes lack these conditions, see
`scalefit.store.fs`). Releasing reads the lease and deletes it if it is still ours.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

from scalefit.errors import DataError
from scalefit.store.fs import ObjectPath, StorePath

__all__ = ["RunLease", "RunLeaseError", "LeasePolicy", "LEASE_FILE", "LOCK_FILE", "DEFAULT_STALE_S"]

LEASE_FILE = "_lease.json"
LOCK_FILE = "_lease.lock"  # kept: deleting a lock file others may hold open would split the lock
DEFAULT_STALE_S = 60.0
LeasePolicy = Literal["wait", "refuse"]
Holder = dict[str, object]
_DELETE: Holder = {}  # what a decision returns to remove the lease


class RunLeaseError(DataError):
    """Another live process holds the run's writer lease (or took this writer's lease over)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLease:
    """The writer lease of one run folder; `acquire` it, `check` it before each write, `release` it."""

    def __init__(
        self,
        run_dir: StorePath,
        run_id: str,
        *,
        policy: LeasePolicy = "wait",
        stale_s: float = DEFAULT_STALE_S,
        wait_s: float | None = None,
    ) -> None:
        if policy not in ("wait", "refuse"):
            raise DataError("unknown lease policy", run_id=run_id, field="lease", value=policy)
        if not stale_s > 0:
            raise DataError("lease timeout must be positive", run_id=run_id, field="stale_s", value=stale_s)
        self.dir, self.run_id, self.policy, self.stale_s, self.wait_s = (
            run_dir,
            run_id,
            policy,
            stale_s,
            wait_s,
        )
        self.path = run_dir / LEASE_FILE
        self.token = uuid.uuid4().hex
        self.host, self.pid = socket.gethostname(), os.getpid()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost = False

    # -- the lock and the file ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)  # read-write: NFS needs it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    @staticmethod
    def _parse(raw: bytes | str) -> Holder | None:
        try:
            holder = json.loads(raw)
        except ValueError:  # a damaged lease file: nobody can be said to hold it
            return None
        return holder if isinstance(holder, dict) else None

    def _read(self) -> Holder | None:
        try:
            return self._parse(self.path.read_bytes())
        except OSError:  # none (FileNotFoundError), or unreadable: nobody can be said to hold it
            return None

    def _record(self) -> Holder:
        record: Holder = {"owner": self.token, "host": self.host, "pid": self.pid, "heartbeat": time.time()}
        record["stale_s"] = self.stale_s
        return record

    def _write(self) -> None:
        tmp = self.dir / f".{LEASE_FILE}.{self.token}.tmp"
        tmp.write_text(json.dumps(self._record()))
        os.replace(tmp, self.path)

    def _update(self, decide: Callable[[Holder | None], Holder | None]) -> tuple[Holder | None, bool]:
        """Atomically read the lease, let ``decide`` pick what to write (None: nothing; ``_DELETE``:
        remove it), write that; the holder read and whether it wrote."""
        if not isinstance(self.path, ObjectPath):
            with self._locked():
                holder = self._read()
                new = decide(holder)
                if new is _DELETE:
                    self.path.unlink(missing_ok=True)
                elif new is not None:
                    self._write()
                return holder, new is not None
        while True:  # an object store: conditional writes; a lost race reads the lease again
            found = self.path.read_versioned()
            holder = None if found is None else self._parse(found[0])
            new = decide(holder)
            if new is None:
                return holder, False
            if new is _DELETE:
                self.path.unlink(missing_ok=True)
                return holder, True
            data = json.dumps(new).encode()
            if found is None and self.path.create_bytes(data):
                return holder, True
            if found is not None and self.path.replace_bytes(data, found[1]):
                return holder, True

    def _free(self, holder: dict[str, object] | None) -> bool:
        """Whether ``holder``'s lease may be taken: none, ours, this process's, stale or a dead local pid."""
        if holder is None or holder.get("owner") == self.token:
            return True
        host, pid = holder.get("host"), holder.get("pid")
        if host == self.host and isinstance(pid, int) and (pid == self.pid or not _alive(pid)):
            return True
        beat, timeout = holder.get("heartbeat"), holder.get("stale_s")
        timeout = float(timeout) if isinstance(timeout, int | float) and timeout > 0 else self.stale_s
        return not isinstance(beat, int | float) or time.time() - float(beat) > timeout  # holder's timeout

    # -- the API --------------------------------------------------------------------------------------
    def acquire(self) -> RunLease:
        """Take the lease (waiting or refusing by ``policy`` while another live process holds it)."""
        start = time.monotonic()
        while True:
            holder, taken = self._update(lambda h: self._record() if self._free(h) else None)
            if taken:
                break
            waited = time.monotonic() - start
            if self.policy == "refuse" or (self.wait_s is not None and waited >= self.wait_s):
                raise RunLeaseError(
                    "another process is writing this run",
                    file=str(self.path),
                    run_id=self.run_id,
                    value={k: holder.get(k) for k in ("host", "pid", "heartbeat")} if holder else None,
                    fix=f"wait until it finishes, or until its lease is stale ({self.stale_s:g} s "
                    "without a heartbeat), then run again",
                )
            time.sleep(min(1.0, self.stale_s / 10))  # poll the holder's heartbeat
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.run_id}", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.stale_s / 4):
            try:
                _, renewed = self._update(
                    lambda h: self._record() if (h or {}).get("owner") == self.token else None
                )
            except OSError:  # the store did not answer (a network error): try again at the next beat
                continue
            if not renewed:
                self._lost = True
                return

    def check(self) -> None:
        """`RunLeaseError` if this lease was lost (taken over by another writer)."""
        if self._lost or (self._read() or {}).get("owner") != self.token:
            self._lost = True
            raise RunLeaseError(
                "this writer's lease was taken over by another process",
                file=str(self.path),
                run_id=self.run_id,
                fix="only one process may write a run; its rows were not written",
            )

    def release(self) -> None:
        """Stop the heartbeat and remove the lease if it is still ours (a no-op when not held)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None
        if self._lost or (isinstance(self.dir, Path) and not self.dir.is_dir()):
            return
        self._update(lambda h: _DELETE if (h or {}).get("owner") == self.token else None)
