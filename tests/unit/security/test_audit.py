"""The audit log's chain, signatures and files: real files under tmp, every tampering the issue names
(an edited byte, a removed line, two lines swapped, a truncation) caught and located."""

from __future__ import annotations

import json
import os

import pytest

from berth.security import audit


def write_log(directory: str, n: int = 10, **kw: int) -> str:
    path = os.path.join(directory, "audit.log")
    log = audit.AuditLog(path, **kw)
    for i in range(n):
        log.record({"kind": "request", "principal": "unix:alice(1000)", "method": "GET", "path": f"/r/{i}",
                    "status": 200})
        log.flush()
    log.close()
    return path


def lines(path: str) -> list[bytes]:
    with open(path, "rb") as f:
        return f.readlines()


def rewrite(path: str, new: list[bytes]) -> None:
    with open(path, "wb") as f:
        f.writelines(new)


def test_an_intact_log_verifies_with_its_files_modes_and_a_signed_stop(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = write_log(str(tmp_path))
    report = audit.verify(path)
    assert report.ok and report.records == 11 and report.checkpoints == 1, report
    recs = [json.loads(line) for line in lines(path)]
    assert [r["seq"] for r in recs] == list(range(1, 12)) and recs[0]["prev"] == audit.GENESIS
    assert recs[-1]["kind"] == "checkpoint" and recs[-1]["reason"] == "stop"
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert oct(os.stat(tmp_path / "audit-key.pem").st_mode & 0o777) == "0o400"
    assert oct(os.stat(tmp_path / "audit.head").st_mode & 0o777) == "0o600"


def test_one_edited_byte_is_found_and_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = write_log(str(tmp_path))
    ls = lines(path)
    ls[3] = ls[3].replace(b"/r/3", b"/r/4")
    rewrite(path, ls)
    report = audit.verify(path)
    assert not report.ok and "line 5: record 5 does not follow record 4: record 4 was changed" in report.problem


def test_a_removed_line_is_found(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = write_log(str(tmp_path))
    ls = lines(path)
    del ls[6]
    rewrite(path, ls)
    report = audit.verify(path)
    assert not report.ok and "line 7: record 7 is missing here (removed or moved)" in report.problem


def test_two_swapped_lines_are_found(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = write_log(str(tmp_path))
    ls = lines(path)
    ls[2], ls[3] = ls[3], ls[2]
    rewrite(path, ls)
    report = audit.verify(path)
    assert not report.ok and "line 3: record 3 is missing here (removed or moved)" in report.problem


@pytest.mark.parametrize("cut", ["line", "mid-line", "last-edited"])
def test_a_truncated_or_changed_end_is_found(tmp_path, cut: str) -> None:  # type: ignore[no-untyped-def]
    path = write_log(str(tmp_path))
    ls = lines(path)
    if cut == "line":
        rewrite(path, ls[:-3])  # whole records gone: the chain is intact; the signed head is not
        report = audit.verify(path)
        assert not report.ok and "records 9..11 are missing at the end (truncated)" in report.problem
    elif cut == "mid-line":
        rewrite(path, [*ls[:-1], ls[-1][:20]])
        report = audit.verify(path)
        assert not report.ok and "ends mid-record" in report.problem
    else:
        rec = json.loads(ls[-2])
        rec["status"] = 500
        ls[-2] = json.dumps(rec, separators=(",", ":")).encode() + b"\n"
        rewrite(path, ls)
        report = audit.verify(path)
        assert not report.ok and "record 11 does not follow record 10" in report.problem


def test_a_checkpoint_signed_with_another_key_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = write_log(str(tmp_path))
    other = tmp_path / "other"
    other.mkdir()
    audit.Signer(str(other))
    report = audit.verify(path, str(other / "audit-key.pub"))
    assert not report.ok and "bad signature" in report.problem


def test_the_chain_runs_across_rotated_files_and_a_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = write_log(str(tmp_path), n=40, max_size=1024, max_files=20)
    assert os.path.exists(path + ".1") and os.path.exists(path + ".2")
    log = audit.AuditLog(path, max_size=1024, max_files=20)  # the daemon again: the chain goes on
    log.record({"kind": "daemon", "action": "start"})
    log.close()
    report = audit.verify(path)
    assert report.ok and report.records > 40 and report.checkpoints >= 3, report
    first = json.loads(lines(report.files[0])[0])
    assert first["seq"] == 1


def test_a_file_left_mid_record_by_a_crash_is_set_aside_and_said(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = write_log(str(tmp_path), n=3)
    with open(path, "ab") as f:
        f.write(b'{"seq":5,"time":"2026')  # a write the crash cut
    log = audit.AuditLog(path)
    log.close()
    recs = [json.loads(line) for line in lines(path)]
    assert recs[0]["action"] == "recover" and "ends with a damaged record" in recs[0]["note"]
    report = audit.verify(path)
    assert not report.ok and report.problem.startswith(f"{path}.1: ends mid-record")


def test_the_writer_keeps_every_record_in_order_and_a_failed_write_loses_none(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "audit.log")
    writer = audit.AuditWriter(path)
    for i in range(5000):
        writer.record_fields(f'"kind":"request","path":"/r/{i}"')
        if i % 700 == 0:
            writer.flush()
    fd = writer.log.fd
    os.close(fd)  # the next write fails (EBADF), as a full or failing disk would
    writer.record({"kind": "daemon", "action": "stop", "note": 'a "quoted"\nline'})
    waiting = writer.backlog()
    writer.flush()  # fails: the records stay queued, in order, numbered again next time
    assert writer.backlog() == waiting > 0
    writer.log._fd = os.open(path, os.O_WRONLY | os.O_APPEND)  # the disk is back
    writer.flush()
    writer.close()
    report = audit.verify(path)
    assert report.ok and report.records == 5002, report
    recs = list(audit.records(path))
    assert [r["path"] for r in recs[:5000]] == [f"/r/{i}" for i in range(5000)]
    assert recs[5000]["note"] == 'a "quoted"\nline'
