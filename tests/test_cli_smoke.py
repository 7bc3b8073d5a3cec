"""The console entry point itself: help everywhere, user errors without tracebacks."""

import json


def test_help_lists_data_group(cli):
    code, out, _ = cli(["--help"])
    assert code == 0
    assert "data" in out


def test_data_error_is_one_message_exit_2(cli, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": 1, "messages": [{"role": "bot", "content": "x"}]}) + "\n", encoding="utf-8")
    code, out, err = cli(["data", "stats", bad])
    assert code == 2
    assert "Traceback" not in out + err
    assert "bad.jsonl:1" in err and "messages[0].role" in err
