"""`psyassist data fetch`: registry, verified downloads from a real local hub server, cache, offline."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import socket
import tarfile
import time

import pytest
import yaml

from hub_server import HubServer
from psyassist.data.fetch import MANIFEST, PARTIAL, fetch, load_registry
from psyassist.errors import PsyassistError

REPO = "test-org/tiny-corpus"
TRAIN = json.dumps([{"messages": [{"role": "user", "content": "我最近睡不好"},
                                  {"role": "assistant", "content": "能多说说吗？"}]}], ensure_ascii=False).encode()
TEST = b'{"messages": []}\n' * 200  # big enough to be served as an LFS file


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def registry(files: list[dict], sources: list[dict], **extra) -> dict:
    entry = {"title": "Tiny", "description": "a test corpus", "license": "CC0-1.0", "flags": [],
             "homepage": "https://example.org", "kind": "train", "files": files, "sources": sources,
             "prepare": [files[0]["path"]]}
    entry.update(extra)
    return {"datasets": {"tiny": entry}}


def file_spec(path: str, data: bytes, **over) -> dict:
    return {"path": path, "size": len(data), "sha256": sha(data), **over}


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """The local hub, with huggingface_hub pointed at it and online (conftest sets HF_HUB_OFFLINE=1)."""
    import huggingface_hub.constants as hf_constants

    server = HubServer().start()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)  # read at import time, maybe already True
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_PROGRESS_BARS", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))  # never the user's cache
    yield server
    server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def files_under(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# --- hf source -------------------------------------------------------------------------


def test_hf_download_is_verified_and_placed(hub, tmp_path, capsys):
    hub.add_repo_file(REPO, "train.json", TRAIN)
    hub.add_repo_file(REPO, "test.json", TEST, lfs=True)  # 302 + X-Linked-Etag/Size, like the real hub
    reg = registry([file_spec("train.json", TRAIN), file_spec("test.json", TEST)],
                   [{"hf": {"repo_id": REPO, "revision": "main"}}])

    res = fetch("tiny", to=tmp_path / "data", registry=reg)

    d = tmp_path / "data" / "tiny"
    assert res.dir == d
    assert (d / "train.json").read_bytes() == TRAIN and (d / "test.json").read_bytes() == TEST
    assert [(f.status, f.verified) for f in res.files] == [("downloaded", True)] * 2
    assert not (d / PARTIAL).exists()  # staging removed, only the files and the manifest remain
    assert set(files_under(d)) == {"train.json", "test.json", MANIFEST}
    manifest = json.loads((d / MANIFEST).read_text())
    assert manifest["test.json"]["sha256"] == sha(TEST)
    # huggingface_hub asked the hub first (HEAD) and sent HF_TOKEN.
    resolve = [r for r in hub.requests if "/resolve/main/train.json" in r[1]]
    assert {m for m, _, _ in resolve} >= {"HEAD", "GET"}
    assert any(h.get("authorization") == "Bearer hf_test_token" for _, _, h in resolve)
    # The LFS body crossed the wire once: the reachability probe must not follow the 302 with a GET.
    assert sum(m == "GET" and p.startswith("/lfs/") for m, p, _ in hub.requests) == 1
    out = capsys.readouterr().out
    assert f"psyassist data prepare {d / 'train.json'} --out prepared/tiny" in out
    assert "license CC0-1.0" in out


def test_sha_mismatch_is_an_error_and_leaves_no_file(hub, tmp_path):
    hub.add_repo_file(REPO, "train.json", TRAIN)
    wrong = sha(b"something else")
    reg = registry([file_spec("train.json", TRAIN, sha256=wrong)], [{"hf": {"repo_id": REPO}}])

    with pytest.raises(PsyassistError) as e:
        fetch("tiny", to=tmp_path, registry=reg)

    msg = str(e.value)
    assert wrong in msg and sha(TRAIN) in msg  # expected vs actual
    assert "deleted" in msg
    assert not any(data == TRAIN for data in files_under(tmp_path).values())  # not in cache, not in staging


def test_size_mismatch_is_an_error_and_leaves_no_file(hub, tmp_path):
    hub.add_repo_file(REPO, "train.json", TRAIN)
    reg = registry([file_spec("train.json", TRAIN, size=len(TRAIN) + 1)], [{"hf": {"repo_id": REPO}}])

    with pytest.raises(PsyassistError) as e:
        fetch("tiny", to=tmp_path, registry=reg)

    assert f"{len(TRAIN) + 1:,} bytes" in str(e.value) and f"got {len(TRAIN)}" in str(e.value)
    assert not any(data == TRAIN for data in files_under(tmp_path).values())


def test_cache_hit_makes_no_network_call(hub, tmp_path, monkeypatch):
    hub.add_repo_file(REPO, "train.json", TRAIN)
    reg = registry([file_spec("train.json", TRAIN)], [{"hf": {"repo_id": REPO}}])
    fetch("tiny", to=tmp_path, registry=reg)
    hub.stop()
    hub.requests.clear()

    res = fetch("tiny", to=tmp_path, registry=reg)
    assert [f.status for f in res.files] == ["cached"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert [f.status for f in fetch("tiny", to=tmp_path, registry=reg).files] == ["cached"]
    assert hub.requests == []


def test_file_placed_by_hand_is_verified_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "train.json").write_bytes(TRAIN)
    reg = registry([file_spec("train.json", TRAIN)], [{"hf": {"repo_id": REPO}}])

    res = fetch("tiny", to=tmp_path, registry=reg)

    assert [(f.status, f.verified) for f in res.files] == [("cached", True)]
    assert json.loads((tmp_path / "tiny" / MANIFEST).read_text())["train.json"]["sha256"] == sha(TRAIN)


def test_corrupted_cached_file_is_not_trusted(hub, tmp_path):
    hub.add_repo_file(REPO, "train.json", TRAIN)
    reg = registry([file_spec("train.json", TRAIN)], [{"hf": {"repo_id": REPO}}])
    fetch("tiny", to=tmp_path, registry=reg)
    cached = tmp_path / "tiny" / "train.json"
    cached.write_bytes(TRAIN[:-1] + b"!")  # same size, new mtime: the manifest record no longer applies
    hub.requests.clear()

    res = fetch("tiny", to=tmp_path, registry=reg)

    assert [f.status for f in res.files] == ["downloaded"]  # noticed, fetched again
    assert cached.read_bytes() == TRAIN


def test_offline_missing_file_says_where_to_put_it(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    reg = registry([file_spec("train.json", TRAIN)], [{"hf": {"repo_id": REPO, "revision": "v1"}}])

    with pytest.raises(PsyassistError) as e:
        fetch("tiny", to=tmp_path, registry=reg)

    msg = str(e.value)
    assert str(tmp_path / "tiny" / "train.json") in msg
    assert f"{hub.endpoint}/datasets/{REPO}/resolve/v1/train.json" in msg
    assert "HF_HUB_OFFLINE" in msg and "again" in msg
    assert hub.requests == []


def test_unreachable_endpoint_fails_fast(hub, tmp_path, monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("HF_ENDPOINT", dead)
    reg = registry([file_spec("train.json", TRAIN)], [{"hf": {"repo_id": REPO}}])

    t0 = time.monotonic()
    with pytest.raises(PsyassistError) as e:
        fetch("tiny", to=tmp_path, registry=reg, timeout=2)
    elapsed = time.monotonic() - t0

    assert elapsed < 4, f"took {elapsed:.1f} s"  # huggingface_hub alone would back off for ~23 s
    assert "cannot reach" in str(e.value) and dead.removeprefix("http://") in str(e.value)
    assert f"{dead}/datasets/{REPO}/resolve/main/train.json" in str(e.value)


# --- url source, fall-through, archives -----------------------------------------------------


def test_url_source_and_fall_through(hub, tmp_path):
    base = hub.add_file("train.json", TRAIN).rsplit("/", 1)[0] + "/"
    # The hub source has no such file (404): the url source must take over.
    reg = registry([file_spec("train.json", TRAIN)], [{"hf": {"repo_id": REPO}}, {"url": {"base": base}}])

    res = fetch("tiny", to=tmp_path, registry=reg)

    assert (tmp_path / "tiny" / "train.json").read_bytes() == TRAIN
    assert res.files[0].source == f"url {base}train.json"
    assert any(m == "HEAD" and "/resolve/" in p for m, p, _ in hub.requests)


def test_url_404_names_the_url(hub, tmp_path):
    base = f"{hub.endpoint}/files/"
    reg = registry([file_spec("missing.json", TRAIN)], [{"url": {"base": base}}])
    with pytest.raises(PsyassistError, match="HTTP 404") as e:
        fetch("tiny", to=tmp_path, registry=reg)
    assert f"{base}missing.json" in str(e.value)


def test_unverified_file_is_downloaded_with_a_warning(hub, tmp_path, capsys):
    base = hub.add_file("train.json", TRAIN).rsplit("/", 1)[0] + "/"
    reg = registry([{"path": "train.json", "size": None, "sha256": None}], [{"url": {"base": base}}])

    res = fetch("tiny", to=tmp_path, registry=reg)

    assert [(f.status, f.verified) for f in res.files] == [("downloaded", False)]
    err = capsys.readouterr().err
    assert "unverified" in err and sha(TRAIN) in err  # the user can pin it


def test_archive_members_are_extracted_once(hub, tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in [("repo-abc/data/1.json", TRAIN), ("repo-abc/data/2.json", TEST),
                           ("repo-abc/README.md", b"readme")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    archive = buf.getvalue()
    url = hub.add_file("abc.tar.gz", archive)
    reg = registry([file_spec("repo.tar.gz", archive, url=url, extract="*/data/*.json")], [{"url": {}}],
                   prepare=["repo"])

    fetch("tiny", to=tmp_path, registry=reg)
    out = tmp_path / "tiny" / "repo"
    assert files_under(out) == {"repo-abc/data/1.json": TRAIN, "repo-abc/data/2.json": TEST}

    (out / "repo-abc" / "data" / "1.json").write_bytes(b"edited")
    res = fetch("tiny", to=tmp_path, registry=reg)
    assert [f.status for f in res.files] == ["cached"]
    assert (out / "repo-abc" / "data" / "1.json").read_bytes() == b"edited"  # not unpacked again


# --- sources, names, CLI ----------------------------------------------------------------


def test_missing_modelscope_falls_through_with_install_line(hub, tmp_path):
    if importlib.util.find_spec("modelscope") is not None:  # an optional extra; this test is about its absence
        pytest.skip("modelscope is installed here")
    base = hub.add_file("train.json", TRAIN).rsplit("/", 1)[0] + "/"
    only_ms = registry([file_spec("train.json", TRAIN)], [{"modelscope": {"id": "o/n"}}])
    with pytest.raises(PsyassistError, match=r"pip install 'psyassist\[modelscope\]'"):
        fetch("tiny", to=tmp_path, registry=only_ms)

    both = registry([file_spec("train.json", TRAIN)], [{"modelscope": {"id": "o/n"}}, {"url": {"base": base}}])
    assert fetch("tiny", to=tmp_path, registry=both).files[0].source.startswith("url ")


def test_source_option_filters_and_rejects(tmp_path):
    reg = registry([file_spec("train.json", TRAIN)], [{"url": {"base": "http://127.0.0.1:9/"}}])
    with pytest.raises(PsyassistError, match="has no 'hf' source; it has: url"):
        fetch("tiny", to=tmp_path, source="hf", registry=reg)
    with pytest.raises(PsyassistError, match="--source must be one of hf, modelscope, url"):
        fetch("tiny", to=tmp_path, source="ftp", registry=reg)


def test_default_cache_dir_honours_psyassist_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PSYASSIST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    reg = registry([file_spec("train.json", TRAIN)], [{"hf": {"repo_id": REPO}}])
    with pytest.raises(PsyassistError) as e:
        fetch("tiny", registry=reg)
    assert str(tmp_path / "cache" / "datasets" / "tiny" / "train.json") in str(e.value)


def test_unknown_name_lists_known_names(cli):
    code, out, err = cli(["data", "fetch", "psydt-corpus"])
    assert code == 2
    assert "Traceback" not in out + err
    assert "Did you mean 'psydtcorpus'" in err
    for name in load_registry():
        assert name in err


def test_list_shows_every_dataset_with_license_and_sources(cli):
    code, out, _ = cli(["data", "fetch", "--list"])
    assert code == 0
    reg = load_registry()
    for name, entry in reg.items():
        assert name in out
        assert entry["license"] in out
    assert "79.3 MB" in out  # psydtcorpus: 50,092,559 + 29,182,406 B
    assert "evaluation-only" in out and "modelscope" in out


def test_cli_fetch_end_to_end(hub, tmp_path, cli):
    base = hub.add_file("train.json", TRAIN).rsplit("/", 1)[0] + "/"
    reg_file = tmp_path / "registry.yaml"
    reg_file.write_text(yaml.safe_dump(registry([file_spec("train.json", TRAIN)], [{"url": {"base": base}}],
                                                flags=["non-commercial"])))
    code, out, err = cli(["data", "fetch", "tiny", "--registry", reg_file, "--to", tmp_path / "d",
                          "--source", "url", "--timeout", "3"])
    assert code == 0, err
    assert "non-commercial" in out.split("ready in")[0]  # the license note comes before the download
    assert (tmp_path / "d" / "tiny" / "train.json").read_bytes() == TRAIN
    assert "psyassist data prepare" in out


# --- the shipped registry ---------------------------------------------------------------


def test_shipped_registry_is_valid_and_complete():
    reg = load_registry()
    expected = {"psydtcorpus", "soulchatcorpus", "smilechat", "cpsycound", "cpsycoune", "emollm", "counselchat",
                "psychcounsel-bench", "psychcounsel-bench-1000", "cpsyexam", "cmmlu-psychology",
                "mmlu-psychology", "imhi"}
    assert expected <= set(reg)
    for name, e in reg.items():
        assert name == name.lower() and " " not in name
        assert e["license"].strip() and e["sources"], name
        for f in e["files"]:
            assert f["sha256"] is None or (len(f["sha256"]) == 64 and int(f["sha256"], 16) >= 0), (name, f)
            assert f["size"] is None or f["size"] > 0, (name, f)
        if "evaluation-only" in e["flags"]:
            assert e["kind"] == "eval", name
    psydt = {f["path"]: (f["size"], f["sha256"]) for f in reg["psydtcorpus"]["files"]}
    assert psydt["PsyDTCorpus_train_mulit_turn_packing.json"] == (
        50092559, "517fabb22502b84de72ff1d62c7efea0bd16f41cf0939d2cd1d52d285c396345")
    assert "non-commercial" in reg["psychcounsel-bench"]["flags"]


def test_invalid_registry_names_entry_and_field(tmp_path):
    bad = registry([{"path": "a.json", "size": -1, "sha256": "abc"}], [], license="")
    with pytest.raises(PsyassistError) as e:
        load_registry(bad)
    msg = str(e.value)
    for part in ("tiny.license", "tiny.files[0].size", "tiny.files[0].sha256", "tiny.sources"):
        assert part in msg
    (tmp_path / "r.yaml").write_text("datasets: [1, 2")
    with pytest.raises(PsyassistError, match="not valid YAML"):
        load_registry(tmp_path / "r.yaml")


@pytest.mark.slow
def test_registry_checksums_match_the_real_files(test_data):
    """The sha256/size values taken from byte-identical local copies, re-checked against those copies."""
    reg = load_registry()
    local = {
        ("counselchat", "20200325_counsel_chat.csv"): "CounselChat/20200325_counsel_chat.csv",
        ("emollm", "data.json"): "EmoLLM_data/emollm_data.json",
        ("psychcounsel-bench", "PsychCounsel-Bench.json"): "PsychCounsel-Bench/PsychCounsel-Bench.json",
        ("psychcounsel-bench-1000", "PsychoBench.json"): "PsychCounsel-Bench/PsychoBench_official_1000.json",
        ("cpsyexam", "mapping.json"): "CPsyExam/mapping.json",
        ("cmmlu-psychology", "dev/professional_psychology.csv"):
            "CMMLU_professional_psychology/dev_professional_psychology.csv",
        ("cmmlu-psychology", "test/professional_psychology.csv"):
            "CMMLU_professional_psychology/test_professional_psychology.csv",
    }
    local.update({("imhi", f["path"]): f"IMHI_MentalLLaMA/{f['path']}" for f in reg["imhi"]["files"]})
    for (name, path), rel in local.items():
        spec = next(f for f in reg[name]["files"] if f["path"] == path)
        data = (test_data / rel).read_bytes()
        assert (len(data), sha(data)) == (spec["size"], spec["sha256"]), (name, path)
    # PsyDTCorpus: the LFS pointers kept beside the data carry the upstream oid and size.
    pointers = (test_data / "PsyDTCorpus" / "LFS_POINTERS_for_verification.txt").read_text()
    for f in reg["psydtcorpus"]["files"]:
        assert f"oid sha256:{f['sha256']}\nsize {f['size']}" in pointers
