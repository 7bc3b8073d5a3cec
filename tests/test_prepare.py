"""`psyassist data prepare`: outputs, report, idempotence, determinism, atomicity."""

import json
from pathlib import Path

import pytest

MESSY = Path(__file__).parent / "fixtures" / "clean" / "messy.jsonl"


def write_corpus(path: Path, n: int = 40) -> Path:
    rows = []
    for i in range(n):
        tag = ["婚恋", "学业", "职场"][i % 3]
        rows.append({"id": f"d{i}", "tags": [tag], "messages": [
            {"role": "user", "content": f"第{i}位来访者：我在{tag}方面遇到了困难，已经持续{i + 2}周了。"},
            {"role": "assistant", "content": f"谢谢你告诉我。关于{tag}，这{i + 2}周里最让你难受的是什么？"},
            {"role": "user", "content": f"主要是晚上想得太多（编号{i}）。"},
            {"role": "assistant", "content": f"晚上反复想这些确实很消耗人。我们先从第{i}件小事开始梳理。"},
        ]})
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(p: Path) -> list[dict]:
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines()]


def test_prepare_outputs_and_report(cli, tmp_path):
    out = tmp_path / "prep"
    code, stdout, err = cli(["data", "prepare", MESSY, "--out", out, "--val-ratio", "0"])
    assert code == 0, err
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    c = report["counts"]
    assert (c["read"], c["out"], c["train"], c["validation"]) == (6, 3, 3, 0)
    assert report["dropped"] == {"duplicate_exact": 1, "duplicate_normalized": 1, "no_assistant": 1}
    for rule in ("crlf_normalized", "junk_chars", "special_tokens", "urls_stripped", "empty_turns",
                 "misplaced_system", "leading_assistant", "same_role_merged", "trailing_user_trimmed"):
        assert report["modified"].get(rule, 0) >= 1, rule
    assert report["pii"] == {"EMAIL": 1, "PHONE": 1}
    assert len(report["inputs"]) == 1 and len(report["inputs"][0]["sha256"]) == 64
    assert report["options"]["seed"] == 42 and report["options"]["urls"] == "strip"
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "duplicate_normalized" in md and "PHONE" in md

    train = read_jsonl(out / "train.jsonl")
    messy = next(r for r in train if r["id"] == "messy-1")
    roles = [m["role"] for m in messy["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    body = json.dumps(train, ensure_ascii=False)
    for bad in ("<|im_end|>", "https://", "13912345678", "jane.doe@", "\u200b", "\ufffd", "\r"):
        assert bad not in body


def test_dataset_dict_and_json_load(cli, tmp_path):
    import datasets

    src = write_corpus(tmp_path / "c.jsonl")
    out = tmp_path / "prep"
    assert cli(["data", "prepare", src, "--out", out, "--val-size", "6"])[0] == 0
    dd = datasets.load_from_disk(str(out / "dataset_dict"))
    assert dd["train"].num_rows == 34 and dd["validation"].num_rows == 6
    assert dd["train"][0]["messages"][0]["role"] == "user"
    js = datasets.load_dataset("json", data_files={"train": str(out / "train.jsonl"),
                                                   "validation": str(out / "validation.jsonl")})
    assert js["validation"].num_rows == 6
    assert sorted(js["train"]["id"]) == sorted(dd["train"]["id"])


def test_prepare_on_its_own_output_changes_nothing(cli, tmp_path):
    src = write_corpus(tmp_path / "c.jsonl")
    messy_copy = tmp_path / "m.jsonl"
    messy_copy.write_text(MESSY.read_text(encoding="utf-8"), encoding="utf-8")
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli(["data", "prepare", src, messy_copy, "--out", a])[0] == 0
    assert cli(["data", "prepare", a / "train.jsonl", "--out", b, "--val-ratio", "0"])[0] == 0
    assert (b / "train.jsonl").read_bytes() == (a / "train.jsonl").read_bytes()
    report = json.loads((b / "report.json").read_text(encoding="utf-8"))
    assert report["modified"] == {} and report["dropped"] == {} and report["pii"] == {}


def test_deterministic_given_seed(cli, tmp_path):
    src = write_corpus(tmp_path / "c.jsonl")
    runs = {}
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        assert cli(["data", "prepare", src, "--out", tmp_path / name, "--seed", seed, "--val-ratio", "0.2"])[0] == 0
        runs[name] = (tmp_path / name / "validation.jsonl").read_bytes()
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]
    report = json.loads((tmp_path / "a" / "report.json").read_text(encoding="utf-8"))
    assert report["split"]["validation"] == {"婚恋": 3, "学业": 3, "职场": 2}  # stratified: 8 of 40


def test_quick_mode_limits(cli, tmp_path):
    src = write_corpus(tmp_path / "c.jsonl")
    out = tmp_path / "q"
    assert cli(["data", "prepare", src, "--out", out, "--max-train-items", "5", "--max-eval-items", "2",
                "--val-size", "10"])[0] == 0
    assert len(read_jsonl(out / "train.jsonl")) == 5 and len(read_jsonl(out / "validation.jsonl")) == 2
    c = json.loads((out / "report.json").read_text(encoding="utf-8"))["counts"]
    assert (c["train_before_limit"], c["validation_before_limit"]) == (30, 10)


def test_crash_mid_write_keeps_old_output(cli, tmp_path, monkeypatch):
    src = write_corpus(tmp_path / "c.jsonl")
    out = tmp_path / "prep"
    assert cli(["data", "prepare", src, "--out", out])[0] == 0
    before = (out / "train.jsonl").read_bytes()

    import psyassist.data.prepare as prep

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(prep, "_write_dataset_dict", boom)
    with pytest.raises(RuntimeError):
        cli(["data", "prepare", src, "--out", out, "--seed", "1"])
    assert (out / "train.jsonl").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "prep"]  # no temp dirs left


@pytest.mark.parametrize("args,needle", [
    (["--max-tokens", "100"], "--max-tokens needs --tokenizer"),
    (["--same-role", "join"], "--same-role"),
    (["--val-ratio", "1.5"], "--val-ratio"),
])
def test_bad_options_are_one_line_errors(cli, tmp_path, args, needle):
    code, out, err = cli(["data", "prepare", MESSY, "--out", tmp_path / "x", *args])
    assert code == 2 and needle in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_everything_dropped_is_an_error(cli, tmp_path):
    src = tmp_path / "u.jsonl"
    src.write_text(json.dumps({"id": 1, "messages": [{"role": "user", "content": "hi"}]}) + "\n", encoding="utf-8")
    code, _, err = cli(["data", "prepare", src, "--out", tmp_path / "x"])
    assert code == 2 and "no_assistant" in err


@pytest.mark.slow
def test_max_tokens_with_real_tokenizer(cli, tmp_path, qwen3_tokenizer_dir):
    src = write_corpus(tmp_path / "c.jsonl", n=10)
    long = {"id": "long", "messages": [{"role": "user", "content": "很长的问题。" * 300},
                                       {"role": "assistant", "content": "好的。"}]}
    with open(src, "a", encoding="utf-8") as f:
        f.write(json.dumps(long, ensure_ascii=False) + "\n")
    out = tmp_path / "p"
    code, _, err = cli(["data", "prepare", src, "--out", out, "--max-tokens", "512",
                        "--tokenizer", qwen3_tokenizer_dir])
    assert code == 0, err
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["dropped"] == {"too_long_tokens": 1} and report["counts"]["out"] == 10


@pytest.mark.slow
def test_real_smilechat_sample(cli, tmp_path, test_data):
    src = test_data / "SMILECHAT" / "smilechat_messages_sample200.jsonl"
    out = tmp_path / "p"
    assert cli(["data", "prepare", src, "--out", out])[0] == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["counts"]["read"] == 200
    assert report["counts"]["train"] + report["counts"]["validation"] == report["counts"]["out"]
    assert report["modified"].get("trailing_user_trimmed", 0) > 0  # SMILECHAT has dialogues ending on user
    for row in read_jsonl(out / "train.jsonl"):
        roles = [m["role"] for m in row["messages"]]
        assert roles[0] == "user" and roles[-1] == "assistant"
        assert all(a != b for a, b in zip(roles, roles[1:], strict=False))


def test_pii_names_file_replaces_listed_names(cli, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("# clients\nAlice Zhang\n王小明\n", encoding="utf-8")
    src = tmp_path / "n.jsonl"
    src.write_text(json.dumps({"id": "1", "messages": [
        {"role": "user", "content": "Alice Zhang told me 王小明 is upset, not Alice."},
        {"role": "assistant", "content": "How do you feel about Alice Zhang saying that?"}]}) + "\n", encoding="utf-8")
    code, _, err = cli(["data", "prepare", src, "--out", tmp_path / "out", "--pii-names", names, "--val-size", "0"])
    assert code == 0, err
    row = json.loads((tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8"))
    assert row["messages"][0]["content"] == "[NAME] told me [NAME] is upset, not Alice."
    assert json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))["pii"]["NAME"] == 3
