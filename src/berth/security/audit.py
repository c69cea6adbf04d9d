"""A tamper-evident audit log: JSON lines, hash-chained, with signed checkpoints.

Each record is one JSON object on one line. Every record carries ``seq`` (1, 2, … across rotated
files) and ``prev``, the SHA-256 of the previous record's line, bytes and newline included; so an
edited, removed or reordered record breaks the chain at the record after it. What no later record
can vouch for, the end of the log, is covered by signatures: the daemon signs a checkpoint record
(Ed25519, its key under the audit directory, mode 0400) when it rotates the file and when it stops,
and after every batch it writes ``audit.head``: the last record's seq and hash, signed. ``verify``
checks the chain, the checkpoints and the head, and names the first bad record.

Records are written in batches by the daemon itself: a request's record is formatted and queued;
every 50 ms the event loop numbers, chains and writes the batch (one ``write``), and once a second a
worker thread ``fdatasync``s it, so the loop never waits for the disk to sync. The queue is bounded:
past ``MAX_PENDING_RECORDS`` (a disk that refuses writes) berthd refuses requests rather than serve
what it cannot record (``Overloaded``). A crash of the daemon loses at most the batch not yet
written (50 ms of records); a power cut, what was not synced (a second).

Threat model: this detects edits by anyone without the signing key (a log shipped elsewhere, a
backup, a user with write access to the file but not to the key) and accidents. Root on the host
can read the key; for evidence that survives root, ship the lines off the host as they are written.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from berth.errors import InvalidParameter, Unavailable

log = logging.getLogger("berth.audit")
GENESIS = "0" * 64  # the ``prev`` of the very first record
FLUSH_EVERY = 0.05  # seconds between two batches written
SYNC_EVERY = 1.0  # seconds between two fdatasyncs of the log: each forces a journal commit, which the
# filesystem work of container starts waits behind (docs/performance.md); a daemon crash loses nothing
# written, a power cut at most this much
MAX_PENDING_RECORDS = 100_000  # records waiting beyond which requests are refused (the disk refuses writes)
DEFAULT_MAX_SIZE = 64 * 1024 * 1024
DEFAULT_MAX_FILES = 8
_CHECKPOINT = "berth-audit-checkpoint"
_HEAD = "berth-audit-head"


class Overloaded(Unavailable):
    """The audit log cannot keep up: berthd refuses what it cannot record."""


def stamp(t: float) -> bytes:
    """``"time":"2026-11-30T04:38:12.123456Z",``: a record's first member."""
    return time.strftime('"time":"%Y-%m-%dT%H:%M:%S.', time.gmtime(t)).encode() + \
        b'%06dZ",' % int(t % 1 * 1_000_000)


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _signed_text(kind: str, seq: int, prev: str) -> bytes:
    return f"{kind}:{seq}:{prev}".encode()


class Signer:
    """The audit key: made at first use (0400), its public half beside it (``audit-key.pub``)."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, "audit-key.pem")
        self.pub_path = os.path.join(directory, "audit-key.pub")
        if os.path.exists(self.path):
            with open(self.path, "rb") as f:
                key = serialization.load_pem_private_key(f.read(), None)
            if not isinstance(key, Ed25519PrivateKey):
                raise InvalidParameter(f"{self.path} is not an Ed25519 key")
            self.key = key
        else:
            self.key = Ed25519PrivateKey.generate()
            pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
        pub = self.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
        if not os.path.exists(self.pub_path):
            with open(self.pub_path, "wb") as f:
                f.write(pub)
        self.fingerprint = hashlib.sha256(pub).hexdigest()[:16]

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self.key.sign(data)).decode()


def _files(path: str) -> list[str]:
    """The log and its rotated files, oldest first (``audit.log.3``, ``.2``, ``.1``, ``audit.log``)."""
    rotated = []
    n = 1
    while os.path.exists(f"{path}.{n}"):
        rotated.append(f"{path}.{n}")
        n += 1
    return [*reversed(rotated), *([path] if os.path.exists(path) else [])]


def _tail(path: str) -> tuple[bytes | None, bool]:
    """(the last complete line of ``path`` or None, whether the file ends mid-line)."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        pos, buf = size, b""
        while pos > 0 and buf.count(b"\n") < 2:
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            buf = f.read(step) + buf
    partial = bool(buf) and not buf.endswith(b"\n")
    complete = buf[:buf.rfind(b"\n") + 1] if b"\n" in buf else b""
    if not complete:
        return None, partial
    start = complete.rfind(b"\n", 0, len(complete) - 1) + 1
    return complete[start:], partial


class AuditLog:
    """The file side: numbers, chains, writes and signs, one batch at a time, in order (for the
    daemon, through ``AuditWriter``)."""

    def __init__(self, path: str, max_size: int = DEFAULT_MAX_SIZE, max_files: int = DEFAULT_MAX_FILES) -> None:
        self.path = path
        self.max_size, self.max_files = max_size, max_files
        directory = os.path.dirname(path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
        self.signer = Signer(directory)
        self.head_path = os.path.join(directory, "audit.head")
        self._pending: list[bytes] = []  # the records' JSON members, their time first
        self.seq, self.head = 0, GENESIS
        self._recover()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.fchmod(fd, 0o600)
        self._fd = fd
        self._size = os.fstat(fd).st_size

    def _recover(self) -> None:
        """Continue the chain where the newest file ends. A file that ends mid-record (the daemon
        stopped while writing) or whose last record does not parse is rotated away as it is, and
        the new file's first record says so (``verify`` still reports the damaged file)."""
        note = None
        for p in reversed(_files(self.path)):
            if os.path.getsize(p) == 0:
                continue
            last, partial = _tail(p)
            try:
                rec = json.loads(last) if last is not None else None
                if rec is not None:
                    self.seq, self.head = int(rec["seq"]), line_hash(last or b"")
            except (ValueError, KeyError, TypeError):
                partial = True
            if partial:
                note = f"{os.path.basename(p)} ends with a damaged record (the daemon stopped while writing it?)"
            break
        if note is not None:
            if os.path.exists(self.path):
                self._rotate_files()
            self.record({"kind": "daemon", "action": "recover", "note": note})

    def record(self, rec: dict[str, Any]) -> None:
        """Queue a record (its members, its time first: ``"time":"…","kind":…``)."""
        self._pending.append(stamp(time.time()) + json.dumps(rec, separators=(",", ":"))[1:-1].encode())

    def pending(self) -> int:
        return len(self._pending)

    def _chain(self, members: list[bytes]) -> list[bytes]:
        """The lines of ``members``, numbered and chained (the loop of every batch: kept tight)."""
        seq, head, sha = self.seq, self.head.encode(), hashlib.sha256
        lines = []
        for m in members:
            seq += 1
            line = b'{"seq":%d,%b,"prev":"%b"}\n' % (seq, m, head)
            head = sha(line).hexdigest().encode()
            lines.append(line)
        self.seq, self.head = seq, head.decode()
        return lines

    def _take(self, checkpoint: str | None = None) -> list[bytes]:
        lines = self._chain(self._pending)
        self._pending = []
        if checkpoint is not None:
            sig = self.signer.sign(_signed_text(_CHECKPOINT, self.seq + 1, self.head))
            lines += self._chain([stamp(time.time()) + f'"kind":"checkpoint","reason":"{checkpoint}",'
                                  f'"key":"{self.signer.fingerprint}","sig":"{sig}"'.encode()])
        return lines

    def _write(self, lines: list[bytes], force_sync: bool = False) -> None:
        if not lines:
            return
        data = b"".join(lines)
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        if force_sync:
            os.fdatasync(self._fd)  # the data and the size; the directory entry is made once, at creation
        self._size += len(data)
        sig = self.signer.sign(_signed_text(_HEAD, self.seq, self.head))
        tmp = self.head_path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"seq": self.seq, "hash": self.head, "key": self.signer.fingerprint, "sig": sig}, f)
        os.replace(tmp, self.head_path)

    @property
    def fd(self) -> int:
        return self._fd

    def flush(self) -> None:
        """Write what is queued (a checkpoint first closes a file that has grown past max_size). The
        records stay queued when the write fails."""
        if self._size >= self.max_size:
            self._write(self._take("rotate"), force_sync=True)
            self._rotate()
        if self._pending:
            members, self._pending = self._pending, []
            seq, head = self.seq, self.head
            try:
                self._write(self._chain(members))
            except OSError:
                self.seq, self.head = seq, head  # numbered again next time, in the same order
                self._pending[:0] = members
                raise

    def _rotate_files(self) -> None:
        """audit.log → .1 → .2 …; the oldest beyond ``max_files`` goes."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{self.path}.{self.max_files - 1}")
        for n in range(self.max_files - 2, 0, -1):
            with contextlib.suppress(FileNotFoundError):
                os.rename(f"{self.path}.{n}", f"{self.path}.{n + 1}")
        os.rename(self.path, f"{self.path}.1")

    def _rotate(self) -> None:
        os.close(self._fd)
        self._rotate_files()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._size = 0

    def close(self) -> None:
        """A last checkpoint, everything written and synced."""
        self._write(self._take("stop"), force_sync=True)
        os.close(self._fd)


class AuditWriter:
    """The daemon's side: a request's record is formatted and queued (``record_fields``); ``flush``,
    run by the event loop every FLUSH_EVERY, numbers, chains and writes the batch, and hands the
    fdatasync (once a second) to a worker thread, so the loop never waits for the disk to sync.

    Measured against the alternatives (docs/performance.md): a writer thread stalled the loop on
    the GIL between requests, and a writer process competed for these machines' two cores with the
    daemon and its clients; both cost /_ping more than this."""

    def __init__(self, path: str, max_size: int = DEFAULT_MAX_SIZE, max_files: int = DEFAULT_MAX_FILES,
                 sync: Callable[[Callable[[], None]], Any] | None = None) -> None:
        self.log = AuditLog(path, max_size, max_files)
        self.path = path
        self._sync = sync  # runs a blocking call elsewhere (the loop's executor); None: inline
        self._syncing: Any = None  # the sync in flight
        self._synced = time.monotonic()
        self._sec, self._prefix = 0, ""
        self.refused = 0
        self._complained = 0.0  # when a failed write was last logged

    def admit(self) -> None:
        """Overloaded when records can no longer be queued (the disk refuses writes)."""
        if len(self.log._pending) >= MAX_PENDING_RECORDS:
            self.refused += 1
            raise Overloaded("the audit log cannot keep up with the requests: berthd refuses what it cannot "
                             "record (try again)")

    def record_fields(self, fields: str) -> None:
        """Queue a record given as its JSON members (``"kind":"request",…``, escaped); its time is put
        first (one strftime a second)."""
        pending = self.log._pending
        if len(pending) >= MAX_PENDING_RECORDS:
            self.admit()  # raises
        t = time.time()
        sec = int(t)
        if sec != self._sec:
            self._sec, self._prefix = sec, time.strftime('"time":"%Y-%m-%dT%H:%M:%S.', time.gmtime(sec))
        pending.append(f'{self._prefix}{int((t - sec) * 1_000_000):06d}Z",{fields}'.encode())

    def record(self, rec: dict[str, Any]) -> None:
        self.record_fields(json.dumps(rec, separators=(",", ":"))[1:-1])

    def backlog(self) -> int:
        """Records waiting to be written."""
        return self.log.pending()

    def flush(self) -> None:
        """Write what is queued; start a sync when the last is a second old and none is running. A
        write that fails leaves the records queued (bounded: past MAX_PENDING_RECORDS requests are
        refused), and the log says why once a second at most."""
        try:
            self.log.flush()
        except OSError as exc:
            now = time.monotonic()
            if now - self._complained >= 1:
                self._complained = now
                log.error("audit log %s: %s (%d records wait)", self.path, exc, self.log.pending())
            return
        syncing = self._syncing is not None and not self._syncing.done()
        if not syncing and time.monotonic() - self._synced >= SYNC_EVERY:
            self._synced = time.monotonic()
            fd = os.dup(self.log.fd)  # the sync's own descriptor: a rotation or close may come meanwhile

            def sync() -> None:
                try:
                    os.fdatasync(fd)
                finally:
                    os.close(fd)

            if self._sync is None:
                sync()
            else:
                self._syncing = self._sync(sync)

    def close(self) -> None:
        """A last checkpoint, everything written and synced."""
        self.log.close()


# ---- reading and verifying ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Report:
    ok: bool
    records: int
    checkpoints: int
    files: list[str]
    problem: str = ""


def _public_key(path: str) -> Ed25519PublicKey:
    try:
        with open(path, "rb") as f:
            key = serialization.load_pem_public_key(f.read())
    except OSError as exc:
        raise InvalidParameter(f"cannot read the audit key {path}: {exc.strerror}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidParameter(f"{path} is not an Ed25519 public key")
    return key


def _verify_sig(key: Ed25519PublicKey, sig: Any, data: bytes) -> bool:
    try:
        key.verify(base64.b64decode(str(sig)), data)
        return True
    except (InvalidSignature, ValueError):
        return False


def verify(path: str, pubkey: str | None = None) -> Report:
    """Check the chain of ``path`` and its rotated files, the checkpoints' signatures and the signed
    head; the first problem found is named (file, line, seq)."""
    directory = os.path.dirname(os.path.abspath(path))
    key = _public_key(pubkey or os.path.join(directory, "audit-key.pub"))
    files = _files(path)
    if not files:
        raise InvalidParameter(f"no audit log at {path}")
    count = checkpoints = 0
    prev_hash: str | None = None
    prev_seq: int | None = None

    def bad(msg: str) -> Report:
        return Report(False, count, checkpoints, files, msg)

    for p in files:
        with open(p, "rb") as f:
            data = f.read()
        if data and not data.endswith(b"\n"):
            at = data.rfind(b"\n") + 1
            return bad(f"{p}: ends mid-record at byte {at} (truncated, or the daemon stopped while writing)")
        for lineno, raw in enumerate(data.splitlines(keepends=True), 1):
            where = f"{p} line {lineno}"
            try:
                rec = json.loads(raw)
                seq, prev = int(rec["seq"]), str(rec["prev"])
            except (ValueError, KeyError, TypeError):
                return bad(f"{where}: not an audit record (edited?)")
            if prev_seq is not None and seq != prev_seq + 1:
                if seq <= prev_seq:
                    return bad(f"{where}: record {seq} comes after record {prev_seq} (records reordered)")
                gone = f"record {prev_seq + 1} is" if seq - 1 == prev_seq + 1 else f"records {prev_seq + 1}..{seq - 1} are"
                return bad(f"{where}: {gone} missing here (removed or moved)")
            if prev_hash is not None and prev != prev_hash:
                return bad(f"{where}: record {seq} does not follow record {prev_seq}: record {prev_seq} was "
                           "changed (or this one was)")
            if prev_seq is None and seq == 1 and prev != GENESIS:
                return bad(f"{where}: the first record does not start the chain")
            if rec.get("kind") == "checkpoint":
                if not _verify_sig(key, rec.get("sig"), _signed_text(_CHECKPOINT, seq, prev)):
                    return bad(f"{where}: checkpoint {seq} has a bad signature")
                checkpoints += 1
            prev_seq, prev_hash = seq, line_hash(raw)
            count += 1
    head_path = os.path.join(directory, "audit.head")
    if os.path.exists(head_path) and os.path.abspath(path) == os.path.join(directory, "audit.log"):
        with open(head_path) as hf:
            head = json.load(hf)
        if not _verify_sig(key, head.get("sig"), _signed_text(_HEAD, int(head["seq"]), str(head["hash"]))):
            return bad(f"{head_path}: bad signature")
        if prev_seq is None or int(head["seq"]) > prev_seq:
            return bad(f"{files[-1]}: records {(prev_seq or 0) + 1}..{head['seq']} are missing at the end "
                       "(truncated)")
        if int(head["seq"]) == prev_seq and head["hash"] != prev_hash:
            return bad(f"{files[-1]}: the last record ({prev_seq}) was changed")
    return Report(True, count, checkpoints, files)


def records(path: str) -> Iterator[dict[str, Any]]:
    """Every record of ``path`` and its rotated files, oldest first (lines that do not parse are skipped)."""
    for p in _files(path):
        with open(p, "rb") as f:
            for raw in f:
                with contextlib.suppress(ValueError):
                    rec = json.loads(raw)
                    if isinstance(rec, dict):
                        yield rec

