"""Crisis audit log: detections stay pending until acknowledged; any edit breaks the hash chain."""

from __future__ import annotations

import json
import multiprocessing as mp

import pytest

from psyassist.errors import PsyassistError
from psyassist.safety.audit import GENESIS, AuditError, AuditLog
from psyassist.safety.crisis import detect

URGENT = "I've decided to end my life this weekend."
NONE = "I'd kill for a coffee right now."


def test_flagged_detection_is_pending_until_acknowledged_and_holds_no_text(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    assert log.record(detect(NONE), client="c1") is None  # nothing to acknowledge
    eid = log.record(detect(URGENT), client="c1", source="note")
    pending = log.pending()
    assert [e["id"] for e in pending] == [eid]
    assert pending[0]["level"] == "urgent" and "suicide" in pending[0]["categories"] and pending[0]["rules"]
    assert URGENT not in (tmp_path / "audit.jsonl").read_text(encoding="utf-8")  # privacy by default
    log.acknowledge(eid, by="counselor-7", note="called; safety plan agreed")
    assert log.pending() == []
    ack = log.entries()[-1]
    assert ack["kind"] == "ack" and ack["event"] == eid and ack["by"] == "counselor-7"


def test_acknowledging_twice_or_an_unknown_id_is_an_error(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    eid = log.record(detect(URGENT), client="c1")
    log.acknowledge(eid, by="a")
    with pytest.raises(PsyassistError, match="already acknowledged by a"):
        log.acknowledge(eid, by="b")
    with pytest.raises(PsyassistError, match="no detection with id 'nope'"):
        log.acknowledge("nope", by="a")
    with pytest.raises(PsyassistError, match="--by"):
        log.acknowledge(eid, by=" ")


def _three(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    for c in ("c1", "c2", "c3"):
        log.record(detect(URGENT), client=c)
    return log, (tmp_path / "audit.jsonl")


@pytest.mark.parametrize("tamper,line", [
    (lambda ls: [ls[0], ls[1].replace('"urgent"', '"concern"'), ls[2]], 3),  # edited: the NEXT line's prev breaks
    (lambda ls: [ls[0], ls[2]], 2),                                          # deleted
    (lambda ls: [ls[1], ls[0], ls[2]], 1),                                   # reordered
    (lambda ls: [ls[0], ls[1], ls[2].replace('"urgent"', '"none"')], None),  # last line edited: see below
])
def test_tampering_breaks_the_chain_at_a_named_line(tmp_path, tamper, line):
    log, path = _three(tmp_path)
    n, last = log.verify()
    assert n == 3 and last != GENESIS
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(tamper(lines)) + "\n", encoding="utf-8")
    if line is None:  # the chain cannot see an edit of its newest line, only the kept last hash can
        assert log.verify()[1] != last
        return
    with pytest.raises(AuditError, match=rf"audit.jsonl:{line}: field 'prev'"):
        log.verify()


def test_a_line_cut_short_is_reported_not_skipped(tmp_path):
    log, path = _three(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(AuditError, match="audit.jsonl:3: the last line is cut short"):
        log.pending()


def _writer(path: str, client: str, n: int) -> None:
    log = AuditLog(path)
    for _ in range(n):
        log.record(detect(URGENT), client=client)


def test_two_processes_appending_keep_one_intact_chain(tmp_path):
    path = str(tmp_path / "audit.jsonl")
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, c, 25)) for c in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    n, _ = AuditLog(path).verify()
    assert n == 50
    assert sorted(json.loads(x)["client"] for x in open(path, encoding="utf-8")) == ["a"] * 25 + ["b"] * 25


def test_cli_pending_ack_verify(cli, tmp_path):
    path = tmp_path / "audit.jsonl"
    eid = AuditLog(path).record(detect(URGENT), client="c9", source="chat")
    code, out, err = cli(["safety", "audit", "pending", path])
    assert code == 0 and eid in out and "client c9" in out and "1 pending" in err
    code, out, _ = cli(["safety", "audit", "ack", path, eid, "--by", "counselor-1", "--note", "phoned"])
    assert code == 0
    code, out, err = cli(["safety", "audit", "pending", path, "--json"])
    assert code == 0 and out.strip() == ""
    code, out, _ = cli(["safety", "audit", "verify", path])
    assert code == 0 and "ok: 2 entries" in out
    path.write_text(path.read_text(encoding="utf-8").replace("phoned", "ignored"), encoding="utf-8")
    code, out, err = cli(["safety", "audit", "verify", path])
    assert code == 0  # the edited line is the newest: the chain holds, the printed last hash changes
    first = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([first[0].replace('"chat"', '"note"'), first[1]]) + "\n", encoding="utf-8")
    code, out, err = cli(["safety", "audit", "verify", path])
    assert code == 2 and "audit.jsonl:2: field 'prev'" in err
