"""Crisis detection: hard cases, evidence spans, normalisation, the classifier engine, resources, CLI.

    pytest tests/test_crisis.py -q
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from psyassist.data.samples import sample_corpus_path
from psyassist.errors import DataError, PsyassistError
from psyassist.safety import crisis
from psyassist.safety.crisis import ClassifierEngine, detect, normalize, read_messages, scan_corpus
from psyassist.safety.resources import attach_resources, regions, resources_for

# --- hard cases (issue 6) ------------------------------------------------------------

CASES = [
    # negation → none
    ("我没有想死", "none"),
    ("我从没想过自杀", "none"),
    ("I'm not suicidal", "none"),
    ("I have never thought about killing myself.", "none"),
    ("I don't want to die, I want things to get better.", "none"),
    ("我不会伤害自己的，放心。", "none"),
    ("Suicide has never crossed my mind.", "none"),
    # negation next to another risk signal → concern
    ("我没有想死，只是觉得自己是个累赘。", "concern"),
    ("I'm not suicidal, but I feel like a burden to everyone.", "concern"),
    # past, history, reported speech → concern (not none, not urgent)
    ("去年我曾经想过自杀，现在好多了", "concern"),
    ("my friend said she wants to die", "concern"),
    ("I used to self-harm", "concern"),
    ("我朋友说她想死", "concern"),
    ("My brother told me he's been thinking about killing himself.", "concern"),
    ("When I was 16 I tried to kill myself.", "concern"),
    # idioms and jokes → none
    ("笑死我了", "none"),
    ("累死了", "none"),
    ("饿死了", "none"),
    ("这部电影终于杀青了", "none"),
    ("I'd kill for a coffee", "none"),
    ("this exam is killing me", "none"),
    ("I'm dying to see the new movie", "none"),
    ("she killed it at the presentation", "none"),
    ("我想死你了！", "none"),  # "I miss you so much"
    ("I'm reading a book about suicide prevention.", "none"),
    ("I cut myself while chopping onions.", "none"),
    # jokes are capped at concern, never dismissed, and not capped when another signal stands beside
    ("今天食堂又是土豆，不想活了哈哈哈", "concern"),
    ("i just wanna die lol nothing matters", "urgent"),
    # indirect statements: passive wishes → concern; farewell and preparation → urgent
    ("不想再醒来", "concern"),
    ("活着没意思", "concern"),
    ("everyone would be better off without me", "concern"),
    ("把东西都送人了", "urgent"),
    ("I've written letters to my family", "urgent"),
    ("I won't be a burden much longer", "urgent"),
    ("遗书我已经写好了。", "urgent"),
    # plan, means, time → urgent
    ("I have the pills ready", "urgent"),
    ("今晚就从楼上跳下去", "urgent"),
    ("I want to die.", "urgent"),
    ("我想自杀", "urgent"),
    ("I've been thinking about suicide and I have a plan.", "urgent"),  # concern + plan → urgent
    ("烧炭的东西我都买好了。", "urgent"),
    ("I bought a rope and I know what I'm going to do with it.", "urgent"),
    # spacing tricks, full-width, traditional characters
    ("我想 自 杀", "urgent"),
    ("I want to k i l l myself", "urgent"),
    ("i want to k*ll myself", "urgent"),
    ("s u i c i d e is the only way out, I've decided", "urgent"),
    ("I want to ｋｉｌｌ myself", "urgent"),
    ("我想自殺", "urgent"),
    ("我今晚就從樓上跳下去", "urgent"),
    ("我真的想ｓｕｉｃｉｄｅ了，今晚就动手。", "urgent"),
]


@pytest.mark.parametrize(("text", "level"), [
    ("I don't think I'll kill myself.", "concern"),            # a hedged denial: a counselor asks
    ("I'm not sure I won't hurt myself tonight", "concern"),
    ("If I don't get out of here I'll kill myself", "urgent"),  # the negation sits in the condition
    ("I don't want to kill myself", "none"),
    ("I'm not going to kill myself, I promise", "none"),
])
def test_negation_scope_condition_and_hedge(text, level):
    d = detect(text)
    assert d.level == level, (text, d.reasons)


@pytest.mark.parametrize(("text", "level"), CASES)
def test_hard_cases(text, level):
    d = detect(text)
    assert d.level == level, (text, d.reasons)
    assert bool(d.categories) == (level != "none")


@pytest.mark.parametrize(("text", "level"), [
    ("我買好了繩子，打算今晚上吊", "urgent"),
    ("他威脅說要殺了我", "urgent"),
    ("我吞了二十多顆安眠藥", "urgent"),
    ("我上週有過輕生的念頭", "concern"),
    ("我覺得自己是個累贅", "concern"),
    ("活著幹什麼", "concern"),
    ("我從來沒有自殘過", "none"),
    ("這部電影殺青了", "none"),
])
def test_traditional_characters(text, level):
    assert detect(text).level == level, detect(text).reasons


@pytest.mark.parametrize(("text", "level", "category"), [
    ("He's hitting me right now, I'm hiding in the bathroom.", "urgent", "abuse"),
    ("My husband pushes me when he's drunk.", "concern", "abuse"),
    ("我爸一喝酒就拿皮带抽我。", "concern", "abuse"),
    ("I'm going to kill my boss tomorrow, I already bought a gun.", "urgent", "harm_to_others"),
    ("明天我就去他公司捅死他，刀我都磨好了。", "urgent", "harm_to_others"),
    ("I can't breathe and my chest hurts.", "urgent", "medical"),
    ("我朋友吃了很多药，现在叫不醒。", "urgent", "medical"),
    ("我最近又开始割手臂了。", "concern", "self_harm"),
    ("I'm going to cut myself tonight.", "urgent", "self_harm"),
])
def test_categories(text, level, category):
    d = detect(text)
    assert (d.level, category in d.categories) == (level, True), d.reasons


# Families added after the second independent set (docs/safety.md, log 6): each positive with a guard
# that shares its words, so a broadened pattern that starts to over-fire fails here.
@pytest.mark.parametrize(("text", "level"), [
    ("I've been stockpiling my meds for a month.", "urgent"),
    ("I'm saving up for a new phone.", "none"),
    ("I swallowed half a bottle of paracetamol", "urgent"),
    ("My mom took all my meds away to keep me safe.", "none"),
    ("im done, i cant do this anymore and i dont want to live", "urgent"),  # no apostrophes
    ("I dont know, its fine, im ok", "none"),
    ("If I don't get help I'll kill myself.", "urgent"),  # the negation belongs to another statement
    ("I'm standing on the railing of the bridge.", "urgent"),
    ("Thinking about sewerslide again and I have a plan.", "urgent"),
    ("My dog is going to my sister's and I've deleted all my social media accounts.", "urgent"),  # two acts
    ("I said goodbye to my friends at the airport.", "none"),  # one act is ordinary
    ("She told me she'll kill me if I leave, and she keeps a knife by the bed.", "urgent"),
    ("I've got a crowbar and I'm waiting outside her work.", "urgent"),
    ("This weekend I'm going to make my brother pay for dinner.", "none"),
    ("I'd be better off dead.", "concern"),
    ("What's the point of getting up anymore?", "concern"),
    ("My stepmom grabs me by the hair when she's angry.", "concern"),
    ("Winter always drags me down a bit.", "none"),
    ("He's a hugger and is constantly touching me on the shoulder.", "none"),
    ("I want to disappear to a beach for a week", "none"),
    ("My therapist asked if I ever think about suicide and I said no.", "none"),
    ("我已经查好了哪栋楼最高", "urgent"),
    ("他拿着刀追我", "urgent"),
    ("我想死，不是开玩笑", "urgent"),  # a denied joke is no joke
    ("我打算趁家里没人的时候吃药", "urgent"),
    ("我把银行卡密码留给了我妹，猫也托邻居照顾了", "urgent"),
    ("我打算明天去买炭，找个没人的地方。", "urgent"),
    ("周末烧烤，我去买炭", "none"),
    ("我觉得我就是个累赘", "concern"),
    ("我媽罵我是廢物", "concern"),
    ("手臂上划了好几道，掐到出血才停", "concern"),
    ("报复性熬夜又到两点了", "none"),
    ("我们今天上课讲了自杀的预警信号", "none"),
])
def test_families_from_the_second_independent_set(text, level):
    d = detect(text)
    assert d.level == level, (text, d.reasons)


def test_overdose_of_someone_else_is_medical_not_suicide():
    mine, theirs = detect("我刚刚吃了一整瓶安眠药"), detect("我朋友吃了很多药，现在叫不醒")
    assert set(mine.categories) == {"suicide", "medical"} and theirs.categories == ["medical"]


def test_privacy_mode_dict_carries_no_words_of_the_message():
    d = detect("我不想活了，今晚就跳楼")
    full, private = d.to_dict(), d.to_dict(include_text=False)
    assert full["evidence"][0]["text"] and full["reasons"]
    assert private["level"] == "urgent" and private["evidence"][0]["rule"].startswith("zh.")
    assert "不想活" not in json.dumps(private, ensure_ascii=False)


def test_reasons_explain_drops_and_caps():
    assert any("negated" in r for r in detect("我没有想死").reasons)
    assert any("past or history" in r for r in detect("I used to want to die every day.").reasons)


# --- evidence and normalisation ---------------------------------------------------------


@pytest.mark.parametrize(("text", "needle"), [
    ("  Honestly? I want to ｋｉｌｌ myself tonight.", "ｋｉｌｌ myself"),
    ("😀 好累…我想 自 杀。", "自 杀"),
    ("i want to k*ll myself", "k*ll myself"),
    ("I think about s.u.i.c.i.d.e a lot and I have a plan", "s.u.i.c.i.d.e"),
    ("我已經寫好遺書了。", "遺書"),
    ("ｅｖｅｒｙｏｎｅ would be better off without me", "better off without me"),
    ("honestly im gonna kill myself tonight, i cant", "kill myself"),  # offsets after an inserted apostrophe
])
def test_evidence_points_into_the_original_text(text, needle):
    d = detect(text)
    assert d.evidence, d.reasons
    for e in d.evidence:
        assert text[e.start:e.end] == e.text
    assert any(needle in e.text or e.text in needle for e in d.evidence), [e.text for e in d.evidence]


@pytest.mark.parametrize(("raw", "norm"), [
    ("自 杀", "自杀"),
    ("自*杀", "自杀"),
    ("s u i c i d e", "suicide"),
    ("S.U.I.C.I.D.E", "suicide"),
    ("k*ll myself", "kill myself"),
    ("k1ll myself", "kill myself"),
    ("ＫＩＬＬ　ｍｙｓｅｌｆ", "kill myself"),
    ("自殺", "自杀"),
    ("遺書", "遗书"),
    ("end   my    life", "end my life"),
    ("I’m", "i'm"),
    ("im done, it wont stop", "i'm done, it won't stop"),  # the inserted ' maps to the letter before it
    ("I feel ill, its fine", "i feel ill, its fine"),  # words of their own are left alone
])
def test_normalize(raw, norm):
    s, idx = normalize(raw)
    assert s == norm
    assert len(idx) == len(s) and idx == sorted(idx) and all(0 <= i < len(raw) for i in idx)


def test_normalize_keeps_clauses_and_ordinary_numbers():
    assert normalize("我没有想死，只是累")[0] == "我没有想死,只是累"  # NFKC: full-width comma → ','
    assert normalize("room 101 at 3pm")[0] == "room 101 at 3pm"
    assert normalize("a b c is fine")[0] == "abc is fine"  # spelled-out letters are joined, by design


def test_first_chars_drive_the_fast_chinese_scan():
    assert crisis.first_chars("想死|不想活|(?:打|揍)我") == {"想", "不", "打", "揍"}
    assert crisis.first_chars(r"\S{0,2}死") is None  # anything can start it: full scan
    assert crisis._ZH_FIRST_SET and "想" in crisis._ZH_FIRST_SET


def test_empty_and_lang_argument():
    assert detect("").level == "none" and detect("   ").level == "none"
    assert detect("我想自杀", lang="en").level == "none" and detect("我想自杀", lang="zh").level == "urgent"
    with pytest.raises(ValueError):
        detect("x", lang="fr")


def test_speed_of_a_1000_character_message():
    text = ("我最近工作压力很大，晚上总是睡不着，" * 60)[:960] + "我觉得活着没意思，今晚就想从楼上跳下去。"
    assert len(text) >= 980 and detect(text).level == "urgent"
    best = min(_time(detect, text) for _ in range(3))
    # ~0.5–0.8 ms on a laptop-class CPU; 5 ms leaves room for slow CI machines.
    assert best < 5.0, f"{best:.2f} ms per 1,000 characters"


def _time(fn, arg, n: int = 50) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn(arg)
    return (time.perf_counter() - t0) / n * 1000


# --- corpus scan and message files -------------------------------------------------------


def test_scan_corpus_on_the_sample_corpus():
    from psyassist.data.readers import read_conversations

    convs = read_conversations([sample_corpus_path()], "auto").conversations
    counts = scan_corpus(convs)
    n_user = sum(m.role == "user" for c in convs for m in c.messages)
    assert counts["none"] + counts["concern"] + counts["urgent"] == n_user
    for c in convs:
        if "crisis" in c.tags:  # every crisis dialogue has at least one flagged user turn
            assert any(detect(m.content).flagged for m in c.messages if m.role == "user"), c.id
    assert counts["urgent"] >= 1 and counts["category:suicide"] >= 3 and counts["category:self_harm"] >= 2


def test_read_messages(tmp_path):
    txt = tmp_path / "m.txt"
    txt.write_text("hello\n\n我想死\n", encoding="utf-8")
    assert read_messages(txt) == [(f"{txt}:1", "hello"), (f"{txt}:3", "我想死")]
    jl = tmp_path / "m.jsonl"
    jl.write_text('"plain"\n{"text": "t"}\n{"messages": [{"role": "user", "content": "u"}, '
                  '{"role": "assistant", "content": "a"}]}\n', encoding="utf-8")
    assert [t for _, t in read_messages(jl)] == ["plain", "t", "u"]
    jl.write_text('{"text": "ok"}\n{"body": 3}\n', encoding="utf-8")
    with pytest.raises(DataError) as e:
        read_messages(jl)
    assert e.value.line == 2 and e.value.field == "text"


# --- classifier engine against a local stand-in server -----------------------------------


class _Server:
    """An OpenAI-compatible stand-in on 127.0.0.1: replies are taken from a list, one per request."""

    def __init__(self, replies: list, delay: float = 0.0):
        self.replies, self.delay, self.requests = list(replies), delay, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                time.sleep(outer.delay)
                reply = outer.replies.pop(0) if outer.replies else "{}"
                status = 500 if reply == 500 else 200
                data = b"error" if status == 500 else json.dumps(
                    {"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        # poll 20×/s so shutdown() returns in ~0.05 s instead of the default 0.5 s
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _verdict(level: str, cats=(), reason: str = "r") -> str:
    return json.dumps({"level": level, "categories": list(cats), "reason": reason})


def test_classifier_raises_a_level_the_rules_missed(monkeypatch):
    monkeypatch.setenv("PSYASSIST_CRISIS_API_KEY", "sk-test")
    text = "I feel like a ghost in my own house lately."
    assert detect(text).level == "none"
    with _Server([_verdict("concern", ["suicide"], "withdrawal and emptiness")]) as srv:
        d = ClassifierEngine(srv.url, "judge-1").detect(text)
    assert (d.level, d.categories, d.engine) == ("concern", ["suicide"], "rules+classifier")
    assert any("withdrawal" in r for r in d.reasons)
    req = srv.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
    assert req["body"]["model"] == "judge-1" and req["body"]["messages"][-1]["content"] == text


def test_classifier_cannot_lower_the_rules():
    with _Server([_verdict("none")]) as srv:
        d = ClassifierEngine(srv.url, "m").detect("I want to kill myself tonight")
    assert d.level == "urgent" and d.engine == "rules+classifier" and d.evidence


def test_classifier_bad_json_is_retried_then_used():
    with _Server(["Sure! The level is urgent.", "```json\n" + _verdict("urgent", ["suicide"]) + "\n```"]) as srv:
        d = ClassifierEngine(srv.url, "m", retries=1).detect("我把猫托付给邻居了")
    assert len(srv.requests) == 2 and d.level == "urgent" and d.engine == "rules+classifier"


def test_classifier_bad_json_twice_falls_back_to_rules(capsys):
    with _Server(["not json", json.dumps({"level": "maybe"})]) as srv:
        d = ClassifierEngine(srv.url, "m", retries=1).detect("我没有想死")
    assert len(srv.requests) == 2
    assert d.level == "none" and d.engine == "rules (classifier unavailable)"
    assert "using the rules only" in capsys.readouterr().err


@pytest.mark.parametrize("failure", ["timeout", "http500", "refused"])
def test_classifier_unreachable_falls_back_to_rules(failure, capsys):
    if failure == "refused":
        eng = ClassifierEngine("http://127.0.0.1:9/v1", "m", timeout=1)
        t0 = time.perf_counter()
        d = eng.detect("今晚就从楼上跳下去")
    else:
        with _Server([500] if failure == "http500" else [_verdict("none")], delay=1.5 if failure == "timeout" else 0) as srv:
            t0 = time.perf_counter()
            d = ClassifierEngine(srv.url, "m", timeout=0.3).detect("今晚就从楼上跳下去")
            assert len(srv.requests) == 1  # a failed request is not retried
    assert time.perf_counter() - t0 < 1.4
    assert d.level == "urgent" and d.engine == "rules (classifier unavailable)"
    assert "warning" in capsys.readouterr().err


# --- resources -------------------------------------------------------------------------------


def test_resources_have_sources_and_dates():
    assert {"cn", "hk", "tw", "us", "uk"} <= set(regions())
    for code in regions():
        for r in resources_for(code):
            assert r.source.startswith("https://") and len(r.last_checked) == 10
            assert r.phone or r.text or r.url
    assert any(r.phone == "988" for r in resources_for("us"))
    assert any(r.phone == "116 123" for r in resources_for("UK"))
    assert any(r.phone == "1925" for r in resources_for("tw"))


def test_unknown_region_lists_the_known_ones():
    with pytest.raises(PsyassistError, match=r"unknown region 'mars'.*cn \(Mainland China\).*us"):
        resources_for("mars")


def test_attach_resources_only_when_flagged():
    assert attach_resources(detect("我想自杀"), "cn")["resources"][0]["source"].startswith("https://")
    assert attach_resources(detect("今天天气不错"), "cn")["resources"] == []
    with pytest.raises(PsyassistError):
        attach_resources(detect("今天天气不错"), "nowhere")


def test_a_resource_without_source_is_rejected(tmp_path, monkeypatch):
    bad = tmp_path / "r.yaml"
    bad.write_text("xx:\n  name: X\n  resources:\n    - name: Line\n      kind: crisis_line\n"
                   "      phone: '123'\n      last_checked: 2026-01-01\n", encoding="utf-8")
    monkeypatch.setenv("PSYASSIST_CRISIS_RESOURCES", str(bad))
    with pytest.raises(DataError) as e:
        resources_for("xx")
    assert e.value.field == "xx.resources[0].source" and e.value.record == 0


# --- CLI ---------------------------------------------------------------------------------------


def test_cli_check_text_json(cli):
    code, out, _ = cli(["safety", "check", "我今晚就从楼上跳下去", "--region", "cn", "--json"])
    obj = json.loads(out)
    assert code == 0 and obj["level"] == "urgent" and obj["region"] == "cn"
    assert any(r["phone"] == "010-82951332" for r in obj["resources"] if "phone" in r)
    assert obj["evidence"][0]["text"] in "我今晚就从楼上跳下去"


def test_cli_check_file_shows_flagged_and_resources(cli, tmp_path):
    f = tmp_path / "msgs.txt"
    f.write_text("I'd kill for a coffee\nI won't be a burden much longer\n今天天气不错\n", encoding="utf-8")
    code, out, _ = cli(["safety", "check", f, "--region", "uk"])
    assert code == 0
    assert "URGENT" in out and "3 messages: none 2, concern 0, urgent 1" in out
    assert "coffee" not in out  # unflagged lines are not shown without --all
    assert "Samaritans" in out and "116 123" in out and "last checked" in out


def test_cli_check_errors(cli, tmp_path):
    code, _, err = cli(["safety", "check", "hello", "--region", "mars"])
    assert code == 2 and "known regions" in err
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"text": "ok"}\nnot json\n', encoding="utf-8")
    code, _, err = cli(["safety", "check", bad])
    assert code == 2 and "b.jsonl:2" in err and "Traceback" not in err


def test_cli_resources(cli):
    code, out, _ = cli(["safety", "resources", "hk", "--json"])
    assert code == 0 and any(r.get("phone") == "2389 2222" for r in json.loads(out))
    code, out, _ = cli(["safety", "resources"])
    assert code == 0 and "tw\tTaiwan" in out
