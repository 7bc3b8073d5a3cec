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


def test_the_per_character_gates_find_what_the_whole_alternation_finds():
    """_gate_hits tries, at each possible start, only the rules that can start there; it must miss nothing."""
    from psyassist.safety.evalset import load_evalset

    texts = [it["text"] for it in load_evalset()]
    for lang, rules in (("en", crisis._EN_RULES), ("zh", crisis._ZH_RULES)):
        whole = crisis._gate_for(tuple(p for *_, p in rules), lang == "en")
        for t in texts:
            s, _ = normalize(t)
            assert {m.start() for m in whole.finditer(s)} <= {a for a, _ in crisis._gate_hits(s, lang)}, t


def test_empty_and_lang_argument():
    assert detect("").level == "none" and detect("   ").level == "none"
    assert detect("我想自杀", lang="en").level == "none" and detect("我想自杀", lang="zh").level == "urgent"
    with pytest.raises(ValueError):
        detect("x", lang="fr")


def test_a_1000_character_message_is_scanned_whole():
    # The urgent sentence is the last 20 characters: the detector reads the whole message, not a prefix.
    # (Its speed is measured in benchmarks/crisis_detect.py, as a ratio, not asserted here.)
    text = ("我最近工作压力很大，晚上总是睡不着，" * 60)[:960] + "我觉得活着没意思，今晚就想从楼上跳下去。"
    assert len(text) >= 980 and detect(text).level == "urgent"
    assert detect(text[:960]).level == "none"


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


# --- constructs (issue 13) ------------------------------------------------------------------------
# Each clinical construct in English and Chinese: the level it gives and its name in `constructs`.

CONSTRUCT_CASES = [
    ("wish_dead", "Some nights I go to sleep hoping I just won't wake up.", "concern"),
    ("wish_dead", "要是我哪天消失了，会有人发现吗？", "concern"),
    ("active_ideation", "I keep thinking about ending my life.", "urgent"),
    ("active_ideation", "我最近常常想结束自己的生命。", "urgent"),
    ("method", "Sometimes I think about jumping off the bridge near work.", "urgent"),
    ("method", "我想从楼顶跳下去。", "urgent"),
    ("intent", "I've made up my mind about dying.", "urgent"),
    ("intent", "我已经决定了，去死。", "urgent"),
    ("plan", "I'm going to do it on Saturday when my parents are away, I've planned it all.", "urgent"),
    ("plan", "我打算这周五趁室友不在的时候吃药。", "urgent"),
    ("preparatory", "I've been putting aside a few of my sleeping tablets every week.", "urgent"),
    ("preparatory", "给爸妈和妹妹的信都写好了，放在抽屉最下面。", "urgent"),
    ("attempt", "I took about forty of my antidepressants twenty minutes ago.", "urgent"),
    ("attempt", "我现在坐在楼顶的边上，腿已经悬在外面了。", "urgent"),
    ("aborted_attempt", "Last night I had the pills in my hand but my cat jumped on the bed and I put them back.", "urgent"),
    ("aborted_attempt", "昨晚我都爬到窗台上了，最后还是下来了。", "urgent"),
    ("nssi", "I burn myself with a lighter when it gets bad.", "concern"),
    ("nssi", "压力大的时候我会拿圆规扎自己的手。", "concern"),
    ("nssi_escalation", "The cuts are getting deeper every week and last time I probably needed stitches.", "urgent"),
    ("nssi_escalation", "我最近划得越来越深，上次差点要去缝针。", "urgent"),
    ("ipv_lethality", "He put his hands around my neck last night until I nearly passed out.", "urgent"),
    ("ipv_lethality", "我老公在床头柜里放了一把刀，说我敢离婚就用它。", "urgent"),
    ("harm_others", "Sometimes I get these awful images of dropping my baby and it terrifies me.", "concern"),
    ("harm_others", "我知道他每天几点下班，刀我已经放在包里了。", "urgent"),
    ("abuse", "My boyfriend shoves me around when he's drunk.", "concern"),
    ("abuse", "我婆婆经常骂我没用。", "concern"),
    ("medical_danger", "My lips are going blue and I can't catch my breath.", "urgent"),
    ("medical_danger", "嘴唇发紫，胸口像压了块石头，喘不上气。", "urgent"),
    ("hopelessness", "There's no future for someone like me.", "concern"),
    ("hopelessness", "我觉得我这辈子就这样了，不会再好起来了。", "concern"),
    ("timeframe", "I'm going to cut myself tonight.", "urgent"),
    ("timeframe", "等考完试我就去死。", "urgent"),
    ("reassurance", "I want to kill myself but I promise I won't do anything, it's just how I feel.", "concern"),
    ("reassurance", "我想自杀，不过只是想想，不会真的去做。", "concern"),
    ("history", "Ten years ago I tried to overdose; these days I run a support group.", "concern"),
    ("history", "十几年前我吃药自杀过，被救回来了，现在生活很好。", "concern"),
    ("third_party", "My sister told me she's been cutting again.", "concern"),
    ("third_party", "我闺蜜说她最近总想着自杀。", "concern"),
]


@pytest.mark.parametrize(("construct", "text", "level"), CONSTRUCT_CASES)
def test_each_construct_in_english_and_chinese(construct, text, level):
    d = detect(text)
    assert (d.level, construct in d.constructs) == (level, True), (d.constructs, d.reasons)
    assert all(e.construct in crisis.CONSTRUCTS for e in d.evidence)
    assert any(e.construct == construct for e in d.evidence) or construct in ("history", "third_party")


@pytest.mark.parametrize(("text", "level"), [
    # means + timeframe with intent, a passive wish with a method or plan nearby: urgent
    ("炭和胶带都买好了，就等周末家里没人。", "urgent"),
    ("他说已经买好了农药，打算这周末喝。", "urgent"),
    ("I feel hopeless and I've been planning how.", "urgent"),
    ("I wish I could disappear, I've saved up my pills.", "urgent"),
    # one everyday preparatory act is nothing; two are urgent; an ordinary purpose makes them ordinary
    ("I deleted my Instagram account.", "none"),
    ("Rehomed my dog yesterday and cancelled my phone contract.", "urgent"),
    ("We're moving, so I found a new home for my cat and cancelled my lease.", "none"),
    ("I gave away half my wardrobe to make room for the baby's things.", "none"),
    ("我把东西都送人了，以后也用不上了。", "urgent"),
    ("I bought charcoal and duct tape today and I'm not having a barbecue.", "urgent"),  # a denied purpose
    ("周末要去露营，买了绳子和炭。", "none"),
    # a supporting cue that is itself denied supports nothing
    ("来访者诉近两周有被动死亡意念，否认自杀计划。", "concern"),
    # reassurance: lowers ideation, never erases it, never lowers an act
    ("Sometimes I wish I could stop existing. But don't worry, I'm not going to do anything.", "concern"),
    ("I want to die. Don't worry, I'm fine.", "concern"),
    ("I took 30 of my tablets an hour ago but don't worry, I'm fine.", "urgent"),
    ("I've bought the charcoal and I know exactly where. Don't worry.", "urgent"),
    ("My fake 'I'm fine' fools everyone, but I want to die.", "urgent"),  # a pretence is no reassurance
    # recent acts are not history; the present after a past counts
    ("上周我差点就从桥上跳下去了。", "urgent"),
    ("I tried to hang myself last month but the knot came loose.", "urgent"),
    ("以前划一两道就够了，现在要划十几道才行。", "urgent"),
    ("I attempted suicide when I was 19.", "concern"),
    # fiction, hyperbole, everyday acts
    ("My character in the play writes a suicide note in act two.", "none"),
    ("这周加班加到想死，终于放假了。", "none"),
    ("I'm standing on the bridge waiting for the fireworks to start.", "none"),
    ("I'm about to jump into the pool, wish me luck!", "none"),
    ("Took two ibuprofen for the headache, feeling better.", "none"),
    ("They ask if I am suicidal, as if that is the only measure.", "concern"),
])
def test_how_constructs_combine(text, level):
    d = detect(text)
    assert d.level == level, (text, d.constructs, d.reasons)


def test_reassurance_and_supporting_constructs_are_evidence():
    d = detect("I want to die. Don't worry, I'm fine.")
    assert d.constructs == ["active_ideation", "reassurance"]
    assert [e.text for e in d.evidence if e.construct == "reassurance"] == ["Don't worry"]
    d = detect("I wish I could disappear, I've saved up my pills.")
    assert {"wish_dead", "preparatory"} <= set(d.constructs) and any(e.rule.startswith("cue.") for e in d.evidence)
    assert detect("今天天气不错").constructs == []


# --- counselor notes: the client is the subject ----------------------------------------------------

@pytest.mark.parametrize(("text", "note_level", "self_level"), [
    ("Client reports she has saved her pills and plans to take them Friday.", "urgent", "concern"),
    ("Pt disclosed he wrote goodbye letters to his children last weekend.", "urgent", "concern"),
    ("She says her ex-partner strangled her on Saturday and has threatened to do it again.", "urgent", "urgent"),
    ("Client said he stood on the overpass Sunday night for an hour before walking home.", "urgent", "concern"),
    ("来访者说他已经写好了遗书。", "urgent", "concern"),
    ("她表示上周曾站在阳台栏杆外，后被家人拉回。", "urgent", "concern"),
    # other people in the note stay third parties
    ("Client's roommate told client that he wants to die.", "concern", "concern"),
    ("Client says her sister told her she wants to die.", "concern", "concern"),
    ("来访者提到同学说过想死，担心同学的状况。", "concern", "concern"),
    # what the note denies, and stories, are nothing
    ("Client denies SI/HI. Mood improved since last session.", "none", "none"),
    ("来访者情绪稳定，本周无自伤自杀念头。", "none", "none"),
    ("Client discussed a novel she is writing in which the heroine overdoses.", "none", "none"),
])
def test_counselor_note_context_assesses_the_client(text, note_level, self_level):
    note, own = detect(text, context="counselor_note"), detect(text)
    assert (note.level, own.level) == (note_level, self_level), (note.reasons, own.reasons)
    if note.flagged:
        assert "counselor_note" in note.constructs
    for e in note.evidence:  # offsets still point into the note as written
        assert text[e.start:e.end] == e.text


def test_counselor_note_rewrites_only_the_client():
    d = detect("Client's husband said he will kill her if she leaves.", context="counselor_note")
    assert d.level == "urgent" and "ipv_lethality" in d.constructs and d.categories == ["abuse"]
    assert [e.text for e in d.evidence if e.construct == "ipv_lethality"] == ["said he will kill her"]
    with pytest.raises(ValueError, match="context"):
        detect("x", context="client")


def test_detection_dict_and_cli_json_keep_their_shape_and_add_constructs(cli):
    d = detect("Client reports she has saved her pills and plans to take them Friday.", context="counselor_note")
    out = d.to_dict()
    assert out["constructs"] == ["plan", "preparatory", "timeframe", "counselor_note"]
    assert {e["construct"] for e in out["evidence"]} == {"preparatory", "plan", "timeframe"}
    code, stdout, _ = cli(["safety", "check", "Client reports she has saved her pills and plans to take them Friday.",
                           "--context", "counselor_note", "--json", "--region", "us"])
    obj = json.loads(stdout)
    assert code == 0 and {"level", "categories", "evidence", "reasons", "resources", "constructs"} <= set(obj)
    assert obj["level"] == "urgent" and "preparatory" in obj["constructs"] and obj["resources"]
    code, _, err = cli(["safety", "check", "hi", "--context", "nope"])
    assert code == 2 and "--context" in err


# --- the classifier stage speaks the same constructs ------------------------------------------------


def test_classifier_prompt_is_built_on_the_constructs():
    for name in crisis.CONSTRUCTS:
        assert f"- {name}:" in crisis.CLASSIFIER_PROMPT
    assert '"constructs": [...]' in crisis.CLASSIFIER_PROMPT and "C-SSRS" in crisis.CLASSIFIER_PROMPT


def test_classifier_constructs_are_merged_and_a_note_says_whose_risk():
    reply = json.dumps({"level": "urgent", "categories": ["suicide"], "constructs": ["preparatory", "made_up"],
                        "reason": "she researched a method"})
    with _Server([reply]) as srv:
        d = ClassifierEngine(srv.url, "m").detect("She has been reading about bridges lately.", context="counselor_note")
    assert (d.level, d.engine) == ("urgent", "rules+classifier")
    assert d.constructs == ["preparatory", "counselor_note"]  # an unknown name is dropped, not a failed verdict
    system, user = srv.requests[0]["body"]["messages"]
    assert system["content"] == crisis.CLASSIFIER_PROMPT and "ipv_lethality" in system["content"]
    assert user["content"].startswith("[A counselor's note") and user["content"].endswith("bridges lately.")
    with _Server([json.dumps({"level": "none", "categories": [], "constructs": ["wish_dead"]})]) as srv:
        d = ClassifierEngine(srv.url, "m").detect("I had a good day.")
    assert d.level == "none" and d.constructs == []  # a none verdict adds nothing
