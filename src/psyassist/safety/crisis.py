"""Crisis detection in Chinese and English: a transparent rule and lexicon engine.

    psyassist safety check "我今晚就从楼上跳下去" --region cn

`detect(text) -> Detection` returns a level (none < concern < urgent), the risk
categories (suicide, self_harm, harm_to_others, abuse, medical), the evidence
spans in the ORIGINAL text and human-readable reasons.  No model, no network;
a 1,000-character message takes about half a millisecond (see
tests/test_crisis.py::test_speed_of_a_1000_character_message and docs/safety.md).

How a message is read, in order:

1. **Normalise**, keeping a map from every normalised character back to the
   original one: NFKC (full-width ｋｉｌｌ → kill, ３０ → 30), lower case,
   traditional → simplified for the characters the lexicon uses (自殺 → 自杀), and
   spacing tricks removed: separators between Chinese characters (自 杀, 自*杀),
   spelled-out letters (s u i c i d e, s.u.i.c.i.d.e), masked letters in a known
   word (k*ll, k1ll, su!cide) and runs of spaces; "im", "cant", "dont" get their apostrophe.
2. **Mask** idioms, jokes and topic talk so no rule can fire inside them
   (笑死 and 累死 never match anyway; "this exam is killing me", "kill time",
   "dying to see", "自杀预防", "suicide prevention", "想死你了" = "I miss you").
3. **Match** the risk rules (`_EN_RULES`, `_ZH_RULES`): id, categories, base level, pattern.
   urgent = active intent ("I want to kill myself", 想死, 不想活了), a method or an
   act under way (jumping, hanging, an overdose taken), farewell and preparation
   (letters to the family, giving things away, "I won't be a burden much longer",
   遗书, 后事安排好了), a threat to the speaker's life, acute medical danger.
   concern = passive ideation ("I wish I could disappear", 活着没意思, 不想再醒来,
   "everyone would be better off without me"), hopelessness, self-harm behaviour,
   abuse, thoughts of hurting someone, a bare mention of suicide.
4. **Context** of each match, in its clause (negation) or sentence (the rest):
   - negated ("I'm not suicidal", 我没有想死, 从没想过自杀) → dropped; other
     signals in the message still count;
   - self-harm in an accident ("cut myself while chopping onions", 不小心) → dropped;
   - past or history (used to, last year, 以前, 曾经, 去年) → at most concern;
   - reported speech, the subject is someone else (my friend said she …, 我朋友说她 …)
     → at most concern, except medical danger, which is urgent whoever it concerns;
   - ideation stated without intent ("no plan", "wouldn't act on it", 念头, 不会去做)
     → at most concern;
   - a recurring urge to self-harm or hurt someone ("sometimes", 有时候) → at most concern;
   - laughter (lol, 哈哈, 😂, 开玩笑) as the only risk signal → at most concern: a joke
     about dying is never dismissed outright, it gets a gentle check rather than an alarm.
5. **Escalate**: a concern match of suicide or harm to others becomes urgent when,
   within 80 characters, the message names a plan or means (pills, a rope, a knife,
   刀片, 安眠药攒够, "I've decided") or an imminent time with intent ("tonight I'm
   going to", 今晚就) or, for suicide, a preparation cue — unless a cap above applies;
   self-harm only on time with intent.  Two different preparation cues in one message
   (re-homing a pet, deleted accounts, 密码写下来, 托朋友照顾) are urgent on their own.
   A means plus a plan with no other wording ("I bought a rope and I know what I'm
   going to do") is urgent.

The level is the highest of the surviving matches.  The rules are a lexicon, not
understanding: see docs/safety.md for the measured precision/recall and the limits.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import unicodedata
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from psyassist.data.io import read_text
from psyassist.errors import DataError
from psyassist.ui import warn

LEVELS = ("none", "concern", "urgent")
CATEGORIES = ("suicide", "self_harm", "harm_to_others", "abuse", "medical")
_RANK = {lv: i for i, lv in enumerate(LEVELS)}


@dataclass(frozen=True, slots=True)
class Evidence:
    start: int  # offsets into the ORIGINAL text: text[start:end] == self.text
    end: int
    text: str
    category: str
    rule: str

    def as_tuple(self) -> tuple[int, int, str, str, str]:
        return (self.start, self.end, self.text, self.category, self.rule)


@dataclass(slots=True)
class Detection:
    level: str = "none"
    categories: list[str] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    engine: str = "rules"

    @property
    def flagged(self) -> bool:
        return self.level != "none"

    def to_dict(self, *, include_text: bool = True) -> dict:
        """JSON-ready; include_text=False drops the matched words and the reasons (which quote them),
        keeping level, categories, offsets and rule ids: what a privacy-mode event log may hold."""
        ev = [{"start": e.start, "end": e.end, "category": e.category, "rule": e.rule,
               **({"text": e.text} if include_text else {})} for e in self.evidence]
        return {"level": self.level, "categories": list(self.categories), "evidence": ev,
                "reasons": list(self.reasons) if include_text else [], "engine": self.engine}


def max_level(*levels: str) -> str:
    return max(levels, key=_RANK.__getitem__)


# --- normalisation ---------------------------------------------------------------

# Traditional → simplified, only for characters that occur in the rules below (a
# full OpenCC table would be a dependency for ~200 characters we need).
_T2S = str.maketrans(
    "殺樓藥經夠還遺書寫過沒會們現開動對著為這個說結從傷絕兒媽給後親東別車禍來農繩燒氣橋頂臺離難無義見時間馬準備劃"
    "頭牆頸罵飯餓懲罰機電錢訴醫計畫決斷帶裡裏嗎讓與輕盡際麼麽餘體聽纍應該願邊誰樣種覺認識當爾脫刪殘掛僅壓絲衝窗陽臥"
    "鐵軌喪虧幾隻燙煙頸勁槍彈誤擊傢暴掙紮韁竊黨殘獄錯謝謝幫歲關腦帳賬長張綁滅毀"
    "顆強姦褻脅報復話條尋贅幹敵週髮攢買講發學於預風險熱線"
    "廢貓顧碼銀煩緣欄價頓鎖門課識號紀錄訊戶陣隨處鄰廳嚇擔憂夢顫歡腳",
    "杀楼药经够还遗书写过没会们现开动对着为这个说结从伤绝儿妈给后亲东别车祸来农绳烧气桥顶台离难无义见时间马准备划"
    "头墙颈骂饭饿惩罚机电钱诉医计画决断带里里吗让与轻尽际么么余体听累应该愿边谁样种觉认识当尔脱删残挂仅压丝冲窗阳卧"
    "铁轨丧亏几只烫烟颈劲枪弹误击家暴挣扎缰窃党残狱错谢谢帮岁关脑帐账长张绑灭毁"
    "颗强奸亵胁报复话条寻赘干敌周发攒买讲发学于预风险热线"
    "废猫顾码银烦缘栏价顿锁门课识号纪录讯户阵随处邻厅吓担忧梦颤欢脚",
)
# NFKC leaves typographic quotes alone; rules are written with ASCII apostrophes.
_T2S.update({0x2019: "'", 0x2018: "'", 0x02BC: "'"})

_CJK = "\u3400-\u4dbf\u4e00-\u9fff"
# "自 杀", "自*杀", "自.杀": filler between two Chinese characters (not Chinese punctuation,
# which separates clauses and matters for negation scope).
_CJK_FILLER = re.compile(rf"(?<=[{_CJK}])[\s*.\-_·•~^/\\|]+(?=[{_CJK}])")
# Spelled-out letters: three or more single letters with the same separator ("k i l l",
# "s.u.i.c.i.d.e"); the same-separator rule stops "s.u.i.c.i.d.e a lot" at the "e".
_SPELLED = re.compile(r"(?<![a-z'])[a-z](?P<sep>[ .\-_*·]+)[a-z](?![a-z'])(?:(?P=sep)[a-z](?![a-z'])){1,}")
_EXTRA_SPACE = re.compile(r"(?<= ) +|(?<=\n)[ \t]+")
# Words with masking characters: k*ll, k1ll, su!cide, $uicide.
_MASKED = re.compile(r"(?<![a-z0-9])[a-z*#@$!013457]*[*#@$!013457][a-z*#@$!013457]*(?![a-z0-9])")
_MASK_HINT = re.compile(r"[a-z][*#@$!013457]|[*#@$!013457][a-z]")
_COMBINING = re.compile(r"[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f\u3099\u309a]")
_LEET = {"1": "il", "!": "il", "0": "o", "3": "e", "4": "a", "@": "a", "5": "s", "$": "s", "7": "t"}
_TRICK_WORDS = ("kill", "killing", "suicide", "suicidal", "die", "dead", "myself", "cut", "cutting", "hang",
                "overdose", "unalive", "death")


# Contractions typed without the apostrophe ("im done", "cant", "wont stop bleeding"): the rules and the
# negation cues are written with it.  Only words that are not English words without it ("ill", "well",
# "its", "hes" stay as they are); the inserted "'" maps to the letter before it.
_NO_APOSTROPHE = re.compile(
    r"\b(?:(i)(m|ve)|(you|they)(re)|(that|what)(s)|(can|don|won|didn|doesn|isn|wasn|weren|aren|wouldn|couldn"
    r"|shouldn|haven|hasn|hadn)(t))\b", re.ASCII)


def _add_apostrophes(s: str, idx: list[int]) -> tuple[str, list[int]]:
    out, out_idx, last = [], [], 0
    for m in _NO_APOSTROPHE.finditer(s):
        cut = next(m.end(g) for g in range(1, 15, 2) if m.group(g))  # end of the stem (i, you, can, …)
        out.append(s[last:cut] + "'")
        out_idx.extend(idx[last:cut] + [idx[cut - 1]])
        last = cut
    if not out:
        return s, idx
    out.append(s[last:])
    out_idx.extend(idx[last:])
    return "".join(out), out_idx


def _unmask(word: str) -> str | None:
    if not any(c.isalpha() for c in word):
        return None  # plain numbers like 30 or 2024 are not tricks
    for cand in _TRICK_WORDS:
        if len(cand) == len(word) and all(
                w == c or w in "*#" or c in _LEET.get(w, "") for w, c in zip(word, cand, strict=True)):
            return cand
    return None


def _delete(s: str, idx: list[int], pattern: re.Pattern, keep_letters: bool = False) -> tuple[str, list[int]]:
    """Remove what `pattern` matches (or, with keep_letters, all but the letters inside a match)."""
    drop = bytearray(len(s))
    hit = False
    for m in pattern.finditer(s):
        hit = True
        for i in range(m.start(), m.end()):
            if not (keep_letters and s[i].isalpha()):
                drop[i] = 1
    if not hit:
        return s, idx
    keep = [i for i in range(len(s)) if not drop[i]]
    return "".join(s[i] for i in keep), [idx[i] for i in keep]


def normalize(text: str) -> tuple[str, list[int]]:
    """Return (normalised text, index map): norm[i] came from text[index_map[i]]."""
    s = unicodedata.normalize("NFKC", text)
    if len(s) == len(text) and not _COMBINING.search(text):
        # Same length and nothing that composes: every character maps to itself (full-width
        # forms, punctuation), so the per-character loop below (~0.5 ms per 1,000) is skipped.
        idx = list(range(len(text)))
    else:
        parts, idx = [], []
        for i, ch in enumerate(text):
            n = unicodedata.normalize("NFKC", ch)
            parts.append(n)
            idx.extend([i] * len(n))
        s = "".join(parts)
    low = s.lower()
    if len(low) != len(s):  # a few characters (İ) lower-case to two; keep the map exact
        low = "".join(c.lower() if len(c.lower()) == 1 else c for c in s)
    s = low.translate(_T2S)
    s, idx = _delete(s, idx, _CJK_FILLER)
    s, idx = _delete(s, idx, _SPELLED, keep_letters=True)
    s, idx = _delete(s, idx, _EXTRA_SPACE)
    s, idx = _add_apostrophes(s, idx)
    if _MASK_HINT.search(s) and _MASKED.search(s):  # same length in and out, so the index map is unchanged
        s = _MASKED.sub(lambda m: _unmask(m.group()) or m.group(), s)
    return s, idx


# --- rules ---------------------------------------------------------------------------

# (rule id, categories, base level, pattern).  Patterns run on normalised text.
_ME = r"(?:my ?self|my own life|my life)"
_OBJ = r"(?:him|her|them|(?:my|the|that|this|those|his|her) (?:boss|ex|wife|husband|(?:step ?)?(?:dad|father|mom|mother)|brother|sister|baby|kids?|child|son|daughter|neighbou?r|teacher|coworker|colleague|partner|boyfriend|girlfriend|family|people|students|classmates?|roommate|bully|bullies|guy|man|woman|kids who \w+ me))"
# Medicines by their everyday names: an overdose or a stockpile is rarely called "pills".
_DRUG = (r"(?:pills|tablets|meds|medication|medicine|painkillers|antidepressants|sleeping pills|tylenol|paracetamol"
         r"|acetaminophen|ibuprofen|advil|aspirin|insulin|xanax|benzos|lithium|oxy(?:codone|contin)?|opioids)")
_EN_RULES: list[tuple[str, tuple[str, ...], str, str]] = [
    # suicide, active
    ("en.kill_self", ("suicide",), "urgent", rf"\b(?:kill|killing|end|ending|take|taking|off|offing)\s+{_ME}\b"
     r"|\b(?:going to|gonna|plan(?:ned|ning)? to|want to|about to) overdose\b"
     r"|\blethal dose\b|\bpainless way to (?:die|go)\b|\bhow to (?:kill myself|die)\b"
     rf"|\b(?:sav(?:e|ed|ing)|stockpil\w+|hoard(?:ed|ing)?|collect(?:ed|ing)|stash(?:ed|ing)?) (?:up )?(?:all )?(?:\w+ ){{0,2}}?{_DRUG}\b"
     rf"|\bhow many (?:of )?(?:my |these |those |the )?(?:\w+ )?{_DRUG} (?:it )?(?:would|will|it'd|to) (?:take|kill)\b"
     r"|\b(?:looked up|look up|googled|searched|researched|checked) (?:\w+ ){0,6}?(?:highest|tallest) (?:\w+ ){0,3}?"
     r"(?:bridge|building|cliff|tower|car park|parking garage)\b"
     r"|\b(?:looked up|look up|googled|searched|researched|checked) (?:which|what|the) (?:bridge|building|cliff|tower|car park)"
     r" (?:\w+ ){0,6}?(?:the )?(?:highest|tallest|high enough)\b"),
    ("en.kill_self_3p", ("suicide",), "concern", r"\b(?:kill|killing|killed|kills)\s+(?:him|her|them)sel(?:f|ves)\b"),
    ("en.end_life_3p", ("suicide",), "concern", r"\b(?:end|ending|take|taking|took)\s+(?:his|her|their) (?:own )?life\b"),
    ("en.want_die", ("suicide",), "urgent",
     r"\b(?:want|wants|wanted|wanna|going|gonna|ready|need|needs) (?:to )?die\b|\bi want to be dead\b"),
    ("en.not_live", ("suicide",), "urgent",
     r"\b(?:don't|do not|no longer) want to (?:live|be alive|exist)\b|\bcan't go on living\b"),
    ("en.end_it", ("suicide",), "urgent",
     r"\bend(?:ing)? it all\b|\b(?:going to|gonna|want to|wanna|about to|thought about|thinking about) end(?:ing)? it\b"),
    ("en.suicidal_now", ("suicide",), "urgent", r"\bi(?:'m| am) (?:feeling |so |really )?suicidal\b"),
    ("en.commit", ("suicide",), "urgent", r"\b(?:commit|committing) suicide\b|\bunalive\b|\bkms\b"),
    ("en.suicide", ("suicide",), "concern", r"\bsuicid(?:e|al)\b|\bsewer ?-?slid(?:e|al)\b"),
    ("en.jump", ("suicide",), "urgent",
     r"\b(?:i'm|i am|i'll|i will|going to|gonna|about to|want to) (?:going to )?jump\b(?! out of (?:a|an|the) (?:air)?plane)"
     r"|\bjump in front of\b"),
    ("en.hang", ("suicide",), "urgent", r"\bhang(?:ing)? myself\b"),
    ("en.ledge", ("suicide",), "urgent",
     r"\b(?:sitting|standing|sat|stood|i'm|i am|climbed) (?:\w+ ){0,2}?(?:on|over|onto) (?:the|a|my) (?:ledge|railing"
     r"|(?:train )?tracks|edge of (?:the|a|my) (?:roof|bridge|building|balcony|cliff|platform))\b"),
    ("en.crash", ("suicide",), "urgent", r"\b(?:going to|gonna) (?:drive|crash) (?:my car )?into\b"),
    ("en.pills_started", ("suicide",), "urgent", r"\bstarted taking the pills\b|\bhow many pills (?:it takes|to die|would)\b"
     r"|\b(?:use|using) (?:it|the gun|a gun|them) on myself\b|\bturn the gun on myself\b"
     r"|\b(?:i have|i've got|i got) (?:the|my|all the|enough) pills ready\b(?! for)"),
    # farewell and preparation
    ("en.note", ("suicide",), "urgent", r"\bsuicide note\b|\b(?:wrote|written|writing|left) (?:goodbye |farewell )?letters? (?:to|for) "
     r"|\b(?:wrote|written|writing|left) (?:a |my )?(?:goodbye |farewell |last )?notes? (?:to|for) (?:my )?(?:family|parents|mom|mum"
     r"|dad|kids|children|husband|wife|partner|everyone|everybody|loved ones)\b"),
    ("en.gave_away", ("suicide",), "urgent", r"\b(?:gave|giving|given) away (?:all )?my\b"
     r"|\b(?:gave|giving|given) (?:all )?my (?:things|stuff|belongings|possessions|cat|dog|pets?) (?:away|to)\b"),
    ("en.goodbye", ("suicide",), "urgent",
     r"\bthis is goodbye\b|\bsaid my goodbyes\b|\bsay(?:ing)? my (?:last )?goodbyes\b|\bmy (?:final|last) words\b"
     r"|\bby the time you read this\b|\btell (?:my )?\w+ i'm sorry\b|\bwon't need (?:them|it) where i'm going\b"
     r"|\bwon't (?:be )?need(?:ing)? (?:(?:these|this|those|my|the) \w+|them|it) (?:any ?more|where i'm going)\b"
     r"|\bnothing left to (?:sort out|settle|arrange)\b|\b(?:put|putting|got) my affairs in order\b"
     r"|\btied up (?:all )?(?:the )?loose ends\b"),
    ("en.burden_soon", ("suicide",), "urgent",
     r"\bwon't be (?:a burden|around|here) (?:much|for) (?:longer|long)\b"
     r"|\b(?:nobody|no one|you|they|everyone) (?:will|'ll|won't) (?:\w+ )?(?:have|need) to (?:deal with|worry about|put up with"
     r"|take care of|look after) me (?:any ?more|after|much longer|soon)\b"
     r"|\b(?:my )?last (?:night|nite|day|sunset) (?:on (?:this )?earth|alive|of my life)\b"),
    ("en.cant_stay_safe", ("suicide",), "urgent", r"\b(?:can't|cannot|don't think i can) keep myself safe\b"),
    # suicide, passive or indirect
    ("en.disappear", ("suicide",), "concern",
     r"\b(?:wish|want) (?:i could |to )?(?:just )?(?:disappear|fade away|vanish)\b"),
    ("en.better_off", ("suicide",), "concern",
     r"\bbetter off (?:\w+ ){0,6}?(?:without me|than with me)\b|\b(?:better|happier) (?:off )?if i (?:wasn't|weren't|was not|were not) (?:around|here|alive)\b"),
    ("en.not_here", ("suicide",), "concern",
     r"\bif i (?:just )?(?:wasn't|weren't) here\b|\bnotice if i was gone\b|\bif i (?:was|were) gone\b"),
    ("en.wish_dead", ("suicide",), "concern",
     r"\bwish i (?:were|was) dead\b|\bbetter off dead\b|\bwish i had never been born\b|\bdying would be a relief\b|\btired of living\b"
     r"|\bpoint (?:of|in) living\b|\bno reason to live\b|\bsleep forever\b"
     r"|\b(?:think|thinking|thought|thoughts) (?:about|of) (?:dying|death|being dead|not being here)\b"),
    ("en.no_wake", ("suicide",), "concern", r"\b(?:not|never|won't|don't want to) wake up\b"),
    ("en.hopeless", ("suicide",), "concern",
     r"\bhopeless\b|\bno way out\b|\bdon't see a future\b|\blife (?:feels|is) pointless\b|\bnothing matters\b"
     r"|\bno point in (?:anything|living|going on|trying|being here)\b"
     r"|\bwhat'?s (?:even )?the point (?:of|in) (?:\w+ ){0,2}?(?:living|life|getting up|waking up|anything|trying|going on"
     r"|being alive|being here|it all)\b"
     r"|\bnothing (?:is|'s) ever going to (?:change|get better)\b|\bnothing will ever (?:change|get better)\b"
     r"|\b(?:it|things|life)(?: is|'s| are|'re)? never going to get better\b"),
    ("en.burden", ("suicide",), "concern", r"\b(?:a|such a) burden (?:to|on) (?:everyone|everybody|my family|them)\b"
     r"|\bdragging (?:everyone|everybody|my family|them) down\b"),
    # self-harm
    ("en.sh_intent", ("self_harm",), "urgent",
     r"\b(?:going to|gonna|want to|wanna|about to|need to) (?:\w+ )?(?:cut|hurt|burn|harm) myself\b"),
    ("en.sh", ("self_harm",), "concern",
     r"\bself[- ]?harm(?:ing|ed)?\b|\b(?:cut|cutting|burn|burns|burned|burning|hurt|hurting|harm|harming|hit|punish|scratching)"
     r" (?:my|him|her)sel(?:f|ves)\b|\b(?:cut|slit|slashed) (?:my|her|his) wrists?\b|\bcutting again\b|\bstopped cutting\b|\bhit my head against\b"
     r"|\bcut (?:way |much |a lot |even )?deeper than (?:usual|normal|before|i meant|last time)\b"),
    ("en.sh_means", ("self_harm",), "concern", r"\b(?:with|holding|have|got) (?:a |the |my )?(?:razor|blade)s?\b"),
    # harm to others
    ("en.harm_intent", ("harm_to_others",), "concern",
     rf"\b(?:want|wants|going|gonna|plan|plans|planning|will|i'll|he'll|she'll)\s+(?:to\s+)?(?:\w+\s+){{0,6}}?"
     rf"(?:kill|stab|shoot|hurt|murder|attack|strangle)\s+{_OBJ}"),
    ("en.harm_thoughts", ("harm_to_others",), "concern",
     rf"\bthoughts? (?:about|of) (?:hurting|killing|harming|attacking) (?:people|others|someone|{_OBJ})"
     rf"|\bcould (?:really )?(?:hurt|kill) {_OBJ}|\b(?:fantasi[sz]e|fantasi[sz]ing|dream|dreaming) about (?:hurting|killing|harming)\b"
     r"|\b(?:picture|picturing|imagine|imagining|fantasi[sz]e|fantasi[sz]ing|dream|dreaming|thinking) (?:about )?"
     r"(?:punching|hitting|hurting|killing|harming|stabbing|strangling|beating|shooting|attacking|choking) "
     rf"(?:people|someone|everyone|{_OBJ})\b"
     rf"|\b(?:make|making) {_OBJ} pay\b(?! (?:me|us|the|rent|back|for (?:the|my|our|dinner|lunch))\b)"),
    ("en.lying_in_wait", ("harm_to_others",), "urgent",  # a weapon and waiting for someone, either order
     r"\b(?:got|have|brought|with|holding) (?:a |my |the )?(?:baseball bat|bat|crowbar|hammer|machete|axe|knife|gun)\b"
     r"[^.!?]{0,60}?\bwaiting (?:for (?:him|her|them) )?(?:outside|at|by|near)\b"
     r"|\bwaiting (?:for (?:him|her|them) )?(?:outside|at|by|near)\b[^.!?]{0,60}?\b(?:with|holding|got|have) (?:a |my |the )?"
     r"(?:baseball bat|bat|crowbar|hammer|machete|axe|knife|gun)\b"),
    # abuse against the speaker
    ("en.abuse_now", ("abuse",), "urgent",
     r"\b(?:said|says|threatened|threatens|told me|keeps saying|swore|swears|screaming|screamed|screams|yelling|yelled"
     r"|shouting|shouted)(?: \w+){0,7}? (?:he|she|they)(?:'ll| will| is going to|'s going to| would|'d) "
     r"(?:kill|murder|strangle|shoot|stab) me\b|\b(?:he|she|they)(?:'ll| will| is going to|'s going to| would|'d) "
     r"(?:break my neck|slit my throat|bury me)\b"
     r"|\b(?:said|says|threatened|threatens|told me|keeps saying) (?:that )?(?:he|she|they)(?:'ll| will| is going to| would)? "
     r"(?:kill|murder) me\b|\bscared for my life\b|\bnobody will find my body\b|\bhitting me right now\b"
     r"|\b(?:gun|knife) to my (?:head|throat)\b|\bpull the trigger\b"),
    ("en.abuse", ("abuse",), "concern",
     r"\b(?:hits?|hitting|beats?|beating|beat me up|slapped|slaps|pushes|pushed|kicks?|kicked|chokes?|choked|strangled|punched"
     r"|abused|molested|raped) me\b|\blocks? me in\b|\bthreatens? to (?:hurt|kill) me\b|\bsexually abused\b"
     r"|\bthrows? (?:things|stuff|\w+) at me\b"
     r"|\b(?:grabs?|grabbed|shoves?|shoved|pins?|pinned|spits? on|spat on|bites|bit) me\b(?! (?:a|an|some|one|two|"
     r"coffee|lunch|food|drinks?|the|out|up|too|as)\b)"
     r"|\b(?:grabs|pulls|yanks|twists) (?:me by )?my (?:wrists?|arms?|hair|throat|neck)\b"
     r"|\b(?:grabbed|pulled|yanked|twisted|dragged) me by (?:my|the) (?:wrists?|arms?|hair|throat|neck)\b"
     r"|\blocks? me out\b|\bkicked me out of the house\b"
     r"|\b(?:calls?|calling|called) me (?:a |an )?(?:worthless|useless|a waste|garbage|trash|a mistake|a failure|pathetic"
     r"|disgusting|whore|slut|piece of \w+)"
     r"|\b(?:gropes|groped|fondles|fondled|molests) me\b|\b(?:touches|touched|touching) (?:me|my (?:body|chest|breasts|private"
     r"|legs?|thighs?|butt))\b(?= (?:\S+ ){0,8}?(?:secret|inappropriately|down there|without|under my|not to tell|when no one))"),
    ("en.abuse_3p", ("abuse",), "concern", r"\b(?:hits|beats|abuses|hurts) (?:her|him|them)\b"),
    # acute medical danger
    ("en.overdose", ("suicide", "medical"), "urgent",
     r"\b(?:i|i've|i have) (?:just )?overdosed\b|\boverdosed on\b|\b(?:just )?(?:took|swallowed|taken) (?:all|a whole bottle|the whole bottle"
     r"|a handful|\d{2,}|twenty|thirty|forty|fifty) (?:of )?(?:my |the |those )?(?:\w+ )?(?:pills|tablets)\b"
     rf"|\b(?:took|swallowed|taken|downed) (?:all|the whole|a whole|an entire|the entire|half(?: a| the)?) (?:bottle|box|pack|packet|strip|jar)"
     rf" of (?:my |the |those )?(?:\w+ )?(?:{_DRUG}|\w+)\b(?<!wine)(?<!beer)(?<!vodka)(?<!water)"
     rf"|\b(?:took|swallowed|taken) (?:all|all of) (?:my|the|those) {_DRUG}\b(?! (?:away|from|off|out|back|with|to)\b)"
     r"|\bdrank (?:a bottle of |some )?(?:bleach|poison|antifreeze)\b"
     r"|\b(?:took|swallowed|taken) (?:about|around|like|over|nearly|maybe) (?:\d{2,}|twenty|thirty|forty|fifty) (?:\w+ )?(?:pills|tablets)\b"),
    ("en.medical", ("medical",), "urgent",
     r"\bcan't breathe\b|\bchest (?:feels|pain|hurts)\b|\bbleeding (?:won't|will not|doesn't) stop\b|\bwon't stop bleeding\b"
     r"|\bbleeding a lot\b|\bhaving a seizure\b|\b(?:won't|can't) wake (?:her|him) up\b|\bunconscious\b|\bcut too deep\b"),
]

_ZH_RULES: list[tuple[str, tuple[str, ...], str, str]] = [
    ("zh.want_die", ("suicide",), "urgent", r"想死|去死|不想活|活不下去|想轻生|准备自杀|想要?自杀|要自杀|想紫砂|紫砂|zisha|寻死"),
    ("zh.end_life", ("suicide",), "urgent", r"结束(?:自己的)?生命|结束自己|结束这一切|一了百了|了结自己"
     r"|吃多少\S?(?:会|能|才)死|致死量|怎么死(?:最|才|不)|死法"),
    ("zh.method", ("suicide",), "urgent",
     r"(?:想|要|就|去|准备|打算|会)\S{0,4}(?:跳楼|跳河|跳江|跳海|跳桥|上吊|卧轨)|从\S{0,4}(?:楼|桥|天台|楼顶)上?跳下去"
     r"|(?:想|要|准备|马上就?|就)跳下去|割腕"
     # on the edge now; the highest bridge looked up; "while the roommate is out"
     r"|(?:站|坐)在\S{0,6}(?:天台|楼顶|屋顶|桥|窗台|栏杆)的?(?:边上|边缘|外面|外边|外侧)|(?:站|坐)在(?:栏杆|窗户|窗台)外|(?:站|坐|躺)在铁轨上"
     r"|(?:查|搜)\S{0,4}(?:哪|什么)\S{0,3}(?:桥|楼|大厦|天台)\S{0,3}(?:最高|够高)"
     r"|趁\S{0,8}(?:不在|没人|睡着|出门)\S{0,8}(?:吃药|吞药|跳|动手|割|烧炭)"),
    ("zh.gas", ("suicide",), "urgent", r"煤气打开|开着煤气|打开煤气|(?:安眠药|药片?)\S{0,6}(?:攒够|存够|攒了|囤了|全吃|全部吃)"
     r"|想好了?怎么死"),
    ("zh.charcoal", ("suicide",), "concern", r"烧炭|(?:买|准备)\S{0,2}(?:木炭|炭)"),
    ("zh.note", ("suicide",), "urgent", r"遗书|遗言|后事\S{0,3}安排好|最后一次\S{0,4}(?:说话|聊天)"),
    ("zh.farewell", ("suicide",), "urgent",
     r"东西都送人|把东西送人|和\S{0,4}告别了|跟\S{0,4}告别了|不会再拖累|看到这条消息的时候\S{0,6}不在了|再也不用痛苦"
     r"|托付给|该交代的都交代|都交代好了"),
    ("zh.suicide", ("suicide",), "concern", r"自杀|轻生|寻短见|做傻事|吞过?药|洗胃"),
    ("zh.passive", ("suicide",), "concern",
     r"活着\S{0,2}(?:没意思|没有意思|没意义|好累|太累|真累)|不想再醒|不要醒过来|再也不要?醒|消失了?就好|想消失|不想再存在"
     r"|没有我\S{0,8}(?:更好|会好|更开心|更轻松)|是\S{0,4}累赘|多余的|死(?:了|掉)(?:也|就)好|死了就不用|想到死|想过死|没有出生|没出生|活够了"
     r"|不在了\S{0,6}(?:不会有人|没人)|为什么还活着|活着(?:有|还有)什么(?:意思|意义|用)|活着干什么"
     r"|拖累(?:所有人|大家|家人|别人|你们)"),
    ("zh.hopeless", ("suicide",), "concern", r"绝望|看不到\S{0,2}(?:希望|未来)|没有希望|(?:什么|一切|所有)都没有?意义"),
    ("zh.sh_intent", ("self_harm",), "urgent", r"(?:想|要)\S{0,4}(?:伤害|划|割|烫)自己|(?:想|要)\S{0,2}(?:割|划)下去"),
    ("zh.sh", ("self_harm",), "concern",
     r"自残|自伤|伤害自己|(?:划|割|烫|掐|抓|咬|扎|戳)(?:伤)?自己|(?:划|割)(?:了|过)?\S?(?:手臂|手腕|胳膊|腕|大腿)|割腕|烟头烫"
     r"|用头撞墙|惩罚自己|(?:掐|抓|咬|划|割|挠)(?:到|得|出)\S{0,2}(?:出血|流血)"
     r"|(?:腕|臂)上?\S{0,2}(?:割|划)(?:了|过|得|开)"),
    ("zh.harm_intent", ("harm_to_others",), "concern",
     r"(?:杀了|杀死|捅死|砍死|弄死|掐死|毒死)(?:他|她|他们|她们)|把\S{1,4}(?:杀了|杀死|掐死|弄死|捅死|砍死)"
     r"|伤害别人|伤害他人|伤害\S{0,3}(?:前任|家人|孩子)|拿刀\S{0,2}(?:去|找|砍|捅)|(?:揍|打)(?:他|她)一顿|报复(?:他|她|他们|她们|社会)"
     r"|把\S{1,10}(?:揍|暴打|痛打|打)一顿|让\S{1,12}付出代价|带(?:着)?(?:刀|枪|斧头|汽油)(?:去|到)"),
    ("zh.abuse_now", ("abuse",), "urgent",
     r"(?:说|威胁|扬言|喊着?|吼着?)\S{0,6}(?:杀了|杀死|弄死|打死|掐死|砍死|捅死|勒死|毒死|整死|搞死)我|正在打我|(?:他|她)现在拿着刀"
     r"|拿着?(?:菜刀|刀|枪|斧头|棍子)\S{0,4}(?:追|砍|对着|指着)我"),
    ("zh.abuse", ("abuse",), "concern",
     r"(?:打|揍|抽|踢|掐|砸)我|家暴|虐待|性侵|猥亵|强奸|掐我脖子|打断我的腿|打骂|把我关(?:在|起来)"
     r"|推了?我\S{0,4}(?:撞|摔|倒|到墙|下楼)|把我推(?:倒|到|下)|扇了?我(?!的)|(?:骂|说)我\S{0,2}(?:是)?(?:废物|垃圾|贱人|贱货|白眼狼|去死)"
     r"|后悔生(?:了|下)?我|不该生(?:下)?我"),
    ("zh.abuse_3p", ("abuse",), "concern", r"(?:老公|丈夫|男朋友|爸|妈|父亲|母亲)\S{0,4}打(?:她|他|他们)"),
    ("zh.overdose", ("suicide", "medical"), "urgent",
     r"(?:吃|吞|服)了?\S{0,2}(?:一整|整|一)(?:瓶|盒)|(?:吃|吞|服)了\S{0,2}(?:\d{2,}|[一二三四五六七八九]?十[一二三四五六七八九]?多?|几十|一大?把)"
     r"(?:片|颗|粒)|吃了很多药|(?:喝|吃)了\S{0,2}(?:农药|百草枯|敌敌畏|老鼠药|消毒水|漂白)"),
    ("zh.medical", ("medical",), "urgent",
     r"喘不上气|喘不过气|呼吸困难|胸口\S{0,2}(?:痛|疼)|血\S{0,2}止不住|流了很多血|叫不醒|昏迷|抽搐"),
]

# Idioms, jokes and topic talk: a rule never fires inside these spans.
_MASKS = [
    r"\b(?:kill|killing|killed) (?:time|it)\b|\bkill(?:ing)? for\b|\b(?:is|are|was) killing me\b|\byou're killing me\b",
    r"\bdying (?:to|for)\b|\bdie (?:of|from) (?:boredom|embarrassment|laughter)\b|\bdied laughing\b|\bbored to death\b",
    r"\bdeath of me\b|\bi'd die for\b|\bcould (?:die|murder)\b|\brather die than\b|\bdead tired\b",
    r"\bsuicide (?:prevention|risk|awareness|hotline|rates?)\b|\boverdose prevention\b"
    r"|\b(?:documentary|book|article|lecture|class|course|film|movie|podcast|paper|thesis|essay|study|research|report)s?"
    r" (?:\w+ ){0,3}(?:about|on) (?:\w+ )?(?:suicide|self-harm|self harm|overdoses?)\b",
    r"想死(?:你|您|你们|他|她)了|自杀(?:预防|干预|风险|热线|率|预警|征兆|信号|新闻|案例|报道|话题|防治)|关于\S{0,8}(?:自杀|自伤|自残)"
    r"|有人跳楼",
    # a class, a book, the news about it; the span stops at a clause mark or 我 ("新闻，我也想自杀" is not topic talk)
    r"(?:课|讲座|培训|文章|书|新闻|电影|纪录片|报道|论文|研究|视频)[^，。！？,.!?\s我]{0,10}(?:自杀|自伤|自残)",
    # charcoal for a barbecue (the span may cross a comma, so it is kept short: 12 characters)
    r"(?:烧烤|烤肉|烤串|bbq|火锅|取暖)[^。！？.!?\n]{0,12}?(?:买|准备)\S{0,2}炭|(?:买|准备)\S{0,2}(?:木炭|炭)[^。！？.!?\n]{0,12}?"
    r"(?:烧烤|烤肉|烤串|bbq|火锅|取暖)",
    r"\b(?:disappear|vanish) (?:into|to|off to|on) (?:a |an |the )?(?:\w+ )?(?:cabin|beach|island|holiday|vacation|trip|mountains?"
    r"|woods|forest|countryside|retreat)\b",
]

# Context cues.  Negation is checked in the clause just before a match; the others in the sentence.
_NEG_WORD_EN = r"\b(?:not|never|don't|do not|doesn't|didn't|won't|wouldn't|isn't|aren't|haven't|hasn't|no(?! one)|nothing)\b"
_NEG_EN = re.compile(_NEG_WORD_EN + r"(?:\W+\w+){0,5}\W*$", re.ASCII)
# "if I don't I'll probably kill myself": a new "I will" after the negation starts a new statement.
_NEG_EN_ENDS = re.compile(_NEG_WORD_EN + r"(?=(?:(?!" + _NEG_WORD_EN + r").)*\bi(?:'ll| will|'m going to|'m gonna)\b)", re.ASCII)
# ... but only inside a condition ("if/unless/when I don't …"): in "I don't think I'll kill myself" the
# negation governs the statement, and "think" makes it a hedged denial (concern, never none).
_COND_EN = re.compile(r"\b(?:if|unless|when|once)\b", re.ASCII)
_HEDGE_EN = re.compile(r"\b(?:think|sure|know (?:if|whether)|expect|promise)\b", re.ASCII)
_NEG_ZH = re.compile(r"(?:没有?|不|从没有?|从来没有?|从不|不会|并没有?|并不|绝不|决不)"
                     r"(?:再|真的|会|想|想过|有|有过|打算|要|被|是|计划)*$")
# "suicide has never crossed my mind": the negation follows the match.
_NEG_AFTER = re.compile(r"\W*(?:has|have|had) never (?:crossed|entered|been on) my mind|\W*从来?没(?:有)?想过"
                        r"|\W+(?:and |but )?i (?:\w+ )?(?:said|answered|told (?:her|him|them)) no\b|[,，]?我(?:说|回答)(?:没有|不是|没|不会)",
                        re.ASCII)
_PAST = re.compile(
    r"\b(?:used to|last (?:year|month|summer|winter)|years? ago|months ago|when i was|in (?:college|high school|school)"
    r"|as a (?:teen|teenager|kid|child)|back then|survived|attempted|stopped|had (?:suicidal )?thoughts|when my \w+ died"
    r"|during my|last week|last time|when i was \d+)\b|\bat (?:age )?(?:1\d|[2-9]\d)\b(?! ?(?:am|pm|o'clock|:))"
    r"|\d+岁(?:的时候|那年)|以前|曾经|去年|前年|上周|上个月|上次|小时候|那时候|那段时间|初中|高中|在过去|过去的"
    r"|过去几|当年|后来|年前|被救", re.ASCII)
# Recurring urges ("sometimes I want to hurt myself", 有时候) are not an intent for now; not
# applied to suicide, where "sometimes I think of jumping" still names a method.
_SOMETIMES = re.compile(r"\b(?:sometimes|at times|occasionally|some days)\b|有时候?|偶尔|时不时", re.ASCII)
_REPORT_EN = re.compile(
    r"\b(?:i|i'm|i've|i'll|i'd|me)\b|\b(?:he|she|they|he's|she's|they're|someone|somebody"
    r"|(?:my|his|her|our|a) (?:\w+ )?(?:friend|brother|sister|mom|mother|dad|father|son|daughter|roommate|classmate|wife|husband"
    r"|partner|boyfriend|girlfriend|colleague|client|cousin|uncle|aunt|kid|child))\b", re.ASCII)
_REPORT_ZH = re.compile(
    r"我(?!妈|爸|朋友|同学|室友|儿子|女儿|弟弟|妹妹|哥哥|姐姐|老公|老婆|男朋友|女朋友|同事|们|家)"
    r"|他|她|有人|别人"
    # a relative after 给/跟/和/对/向 is an object ("写给妈妈"), not the one speaking
    r"|(?<![给跟和对向陪找让])(?:朋友|同学|室友|妈妈|爸爸|儿子|女儿|弟弟|妹妹|哥哥|姐姐|老公|老婆|男朋友|女朋友|同事|孩子)")
_NO_INTENT = re.compile(
    r"\b(?:don't have a plan|no plan|wouldn't act|won't act|not going to act|wouldn't do anything|i wouldn't)\b"
    r"|念头|不会去做|不会做什么|不会这么做|没有\S{0,4}计划", re.ASCII)
_LAUGH = re.compile(r"\b(?:lol|lmao|haha\w*|jk|just kidding)\b|哈哈|hhh|😂|🤣|233|开玩笑", re.ASCII)
# "我是认真的，不是开玩笑", "I'm not joking": the opposite of a joke.
_NOT_JOKING = re.compile(r"(?:不是|没有?在?|并不是|绝不是)(?:跟你|和你)?开玩笑|\bnot (?:joking|kidding|just kidding)\b|\bno joke\b",
                         re.ASCII)
_ACCIDENT = re.compile(r"\b(?:while|accidentally|by accident|chopping|shaving|on the stove|blister|nick)\b|不小心|切菜|剪头发", re.ASCII)
_PLAN_MEANS = re.compile(
    r"\b(?:pills?|rope|gun|razor|blade|knife|bleach|a plan|planning|know (?:exactly )?(?:how|where|what i'm going to do)"
    r"|saved up|stockpil\w+|loaded|bought|ready)\b|安眠药|绳子|刀片|刀|农药|煤气|炭|药\S{0,2}买好|买好|攒够|存够|准备好|想好"
    r"|计划|天台|楼顶|决定|唯一的出路|\b(?:can't control|decided|only way out)\b|控制不住", re.ASCII)
_SOON = re.compile(r"\b(?:tonight|right now|this weekend|today|tomorrow|in an hour)\b|今晚|今天晚上|马上|现在就|今天|明天|周末", re.ASCII)
_INTENT = re.compile(r"\b(?:going to|gonna|want to|wanna|will|i'll|about to|decided|ready)\b|就|要|准备|打算|决定", re.ASCII)
# Preparation in everyday words.  One such act is ordinary (people re-home a cat, delete an account,
# say goodbye); two or more in one message read as putting affairs in order (urgent), and one next to
# a concern match about suicide escalates it.
_PREP_EN = (
    r"\bleft (?:\w+ )?instructions (?:for|about|on)\b|\bdeleted (?:all )?(?:of )?my (?:\w+ ){0,2}?(?:accounts|profiles|photos|posts)\b"
    r"|\b(?:cat|dog|pets?|fish|rabbit|hamster)(?:'s| is| are|'re)? going to (?:my|a|the|live with)\b"
    r"|\bfound (?:a )?(?:new )?homes? for my (?:cat|dog|pets?)\b|\b(?:wrote|made|updated|finished|signed) my will\b"
    r"|\b(?:cancell?ed|ended) (?:all )?my (?:subscriptions|phone contract|lease|appointments|therapy)\b"
    r"|\bpaid (?:off|back) (?:all )?(?:my debts|everyone|everything)\b|\bpasswords? (?:are )?(?:written down|for (?:my|everything))\b"
    r"|\bsaid (?:my )?goodbyes? to\b|\bwithout (?:telling|letting) (?:her|him|them|anyone) (?:know )?(?:why|what)\b"
    r"|\btonight's the night\b|\b(?:i will|i'll) miss you all\b|\b(?:can't|cannot) continue (?:the journey|down this road)\b"
    r"|\bit's time (?:for me to go|i must be going|to say goodbye)\b")
_PREP_ZH = (
    r"密码\S{0,6}(?:写下来|写好|留给|告诉|放在)|(?:猫|狗|宠物)\S{0,4}托\S{0,4}(?:照顾|养)|托(?:朋友|人|邻居|同事|室友)\S{0,2}(?:照顾|养)"
    r"|以后\S{0,2}不(?:会)?再?(?:麻烦|打扰)(?:大家|你们|任何人|别人|你)|(?:存款|钱|卡)\S{0,6}(?:留给|转给)|(?:写|立)好?了?遗嘱"
    r"|删(?:掉|除)?了?\S{0,4}(?:所有|全部)的?\S{0,4}(?:聊天记录|照片|账号|微博|朋友圈)|(?:借的东西|欠的钱)\S{0,4}还")
_PREP = re.compile(f"{_PREP_EN}|{_PREP_ZH}", re.ASCII)
_PREP_BY_LANG = {"en": re.compile(_PREP_EN, re.ASCII), "zh": re.compile(_PREP_ZH)}
_MEANS_ONLY = re.compile(r"\b(?:bought|got|have|'ve got) (?:a |the )?(?:rope|gun)\b", re.ASCII)
_PLAN_ONLY = re.compile(r"\bknow (?:exactly )?(?:how|where|what i'm going to do)\b", re.ASCII)

_CLAUSE = re.compile(r"[,;:，；：、。！？!?\n]|\.(?:\s|$)|\s(?:but|and|so)\s|但是?|可是", re.ASCII)
_SENTENCE = re.compile(r"[。！？!?\n]|\.(?:\s|$)|;|；", re.ASCII)
_WINDOW = 80  # characters either side in which a plan/means/time cue escalates a concern match

# English rules use ASCII word boundaries, so "想suicide" (no space after a Chinese character) still matches.
_RULES_BY_LANG = {
    "en": [(rid, cats, lv, re.compile(p, re.ASCII)) for rid, cats, lv, p in _EN_RULES],
    "zh": [(rid, cats, lv, re.compile(p)) for rid, cats, lv, p in _ZH_RULES],
}
_MASK_RE = re.compile("|".join(_MASKS), re.ASCII)
# One alternation of a language's rules finds where anything could match (~0.3 ms per 1,000
# characters instead of ~1 ms for every rule over the whole text); the rules then run only
# within _MARGIN characters of those hits (longer than any rule's match).
_GATE = {lang: re.compile("|".join(f"(?:{p})" for _, _, _, p in rules), re.ASCII if lang == "en" else 0)
         for lang, rules in (("en", _EN_RULES), ("zh", _ZH_RULES))}
_MARGIN = 120


def first_chars(pattern: str) -> set[str] | None:
    """The characters a match of `pattern` can start with, or None when that is not a small set.

    Read from the parsed pattern (the stdlib's own regex parser).  Chinese text is then scanned
    by jumping to those characters (~0.2 instead of ~0.45 ms per 1,000 characters).
    """
    try:
        import re._constants as C  # Python ≥ 3.11
        import re._parser as P
    except ImportError:  # pragma: no cover - Python 3.10
        import sre_constants as C  # type: ignore[no-redef]
        import sre_parse as P  # type: ignore[no-redef]

    def first(items) -> set[str] | None:
        out: set[str] = set()
        for op, av in items:
            if op is C.AT:
                continue
            if op is C.LITERAL:
                return out | {chr(av)}
            if op is C.IN:
                for o, a in av:
                    if o is C.LITERAL:
                        out.add(chr(a))
                    elif o is C.RANGE and a[1] - a[0] < 64:
                        out.update(chr(x) for x in range(a[0], a[1] + 1))
                    else:
                        return None
                return out
            if op is C.BRANCH or op is C.SUBPATTERN:
                for alt in (av[1] if op is C.BRANCH else [av[-1]]):
                    f = first(alt)
                    if f is None:
                        return None
                    out |= f
                return out
            if op in (C.MAX_REPEAT, C.MIN_REPEAT):
                f = first(av[2])
                if f is None:
                    return None
                out |= f
                if av[0] > 0:
                    return out
                continue
            return None
        return None

    return first(P.parse(pattern))


_ZH_FIRST_SET = first_chars("|".join(f"(?:{p})" for _, _, _, p in _ZH_RULES))
_ZH_FIRST = re.compile("[" + re.escape("".join(sorted(_ZH_FIRST_SET))) + "]") if _ZH_FIRST_SET else None
_HAS_LATIN = re.compile(r"[a-z]")
_HAS_CJK = re.compile(rf"[{_CJK}]")


def _cuts(s: str, splitter: re.Pattern) -> tuple[list[int], list[int]]:
    ms = list(splitter.finditer(s))
    return [m.start() for m in ms], [m.end() for m in ms]


def _bounds(cuts: tuple[list[int], list[int]], pos: int, n: int) -> tuple[int, int]:
    """(start, end) of the clause or sentence around `pos`."""
    starts, ends = cuts
    i = bisect.bisect_right(ends, pos)  # separators ending at or before pos
    return (ends[i - 1] if i else 0), (starts[i] if i < len(starts) else n)


def _gate_hits(s: str, lang: str) -> Iterator[tuple[int, int]]:
    gate = _GATE[lang]
    if lang == "en" or _ZH_FIRST is None:
        yield from (m.span() for m in gate.finditer(s))
        return
    for c in _ZH_FIRST.finditer(s):
        if m := gate.match(s, c.start()):
            yield m.span()


def _regions(s: str, langs: list[str]) -> list[tuple[str, int, int]]:
    spans = sorted((lang, max(0, a - _MARGIN), b + _MARGIN) for lang in langs for a, b in _gate_hits(s, lang))
    merged: list[list] = []
    for lang, a, b in spans:
        if merged and merged[-1][0] == lang and a <= merged[-1][2]:
            merged[-1][2] = max(merged[-1][2], b)
        else:
            merged.append([lang, a, b])
    return [(lang, a, min(b, len(s))) for lang, a, b in merged]


_KIN_ZH = re.compile(r"有人|别人|朋友|同学|室友|妈妈|爸爸|儿子|女儿|弟弟|妹妹|哥哥|姐姐|老公|老婆|男朋友|女朋友|同事|孩子")
_SAYS_ZH = re.compile(r"说|写|告诉|提到|讲|发消息|发帖")


def _reported(prefix: str, zh: bool) -> bool:
    """Is the last subject before the match someone other than the speaker?

    Chinese drops subjects and 他/她 is as often the object ("去他公司捅死他"), so a bare
    他/她 counts only after a verb of saying (说, 写, 告诉); a relative (我朋友, 我妈妈) counts alone.
    """
    subjects = list((_REPORT_ZH if zh else _REPORT_EN).finditer(prefix))
    if not subjects:
        return False
    last = subjects[-1].group()
    if not zh:
        return last not in ("i", "i'm", "i've", "i'll", "i'd", "me")
    if last.startswith("我"):
        return False
    return bool(_KIN_ZH.fullmatch(last) or _SAYS_ZH.search(prefix))


def _escalation(s: str, a: int, b: int, cats: tuple[str, ...]) -> str | None:
    """Why a concern match becomes urgent: a plan or means, or an imminent time with intent, nearby.

    For self-harm a blade nearby is the usual tool, not a plan: only time with intent counts.
    """
    near = s[max(0, a - _WINDOW):a] + " " + s[b:b + _WINDOW]
    if cats != ("self_harm",) and (m := _PLAN_MEANS.search(near)):
        return f"plan or means nearby: {m.group()!r}"
    if "suicide" in cats and (m := _PREP.search(near)):
        return f"preparation nearby: {m.group()!r}"
    if (m := _SOON.search(near)) and _INTENT.search(near):
        return f"imminent time with intent: {m.group()!r}"
    return None


def _judge(text, s, idx, det, rid, cats, level, a, b, clauses, sentences) -> list[list]:
    """Apply the context rules to one match: [] when it is dropped, else [the match]."""
    zh = rid.startswith("zh.")
    c0, _ = _bounds(clauses, a, len(s))
    s0, s1 = _bounds(sentences, a, len(s))
    sentence = s[s0:s1]
    hedged = False
    if zh:
        negated = _NEG_ZH.search(s[c0:a])
    elif m := _NEG_EN.search(s[c0:a]):
        restarts = _NEG_EN_ENDS.match(s, c0 + m.start(), a) and _COND_EN.search(s, c0, c0 + m.start())
        negated = not restarts
        hedged = negated and bool(_HEDGE_EN.search(s, c0 + m.start(), a))
    else:
        negated = None
    if hedged:
        negated = False  # "I don't think I'll …", "I'm not sure I won't …": a counselor asks; capped below
    if negated or _NEG_AFTER.match(s, b):
        det.reasons.append(f"ignored {text[idx[a]:idx[b - 1] + 1]!r} ({rid}): negated")
        return []
    if "self_harm" in cats and "suicide" not in cats and _ACCIDENT.search(sentence):
        det.reasons.append(f"ignored {text[idx[a]:idx[b - 1] + 1]!r} ({rid}): an accident")
        return []
    caps, reported = (["hedged denial"] if hedged else []), _reported(s[s0:a], zh)
    if _PAST.search(sentence):
        caps.append("past or history")
    if "medical" in cats:
        # Acute medical danger is urgent whoever it concerns; an overdose counts as
        # suicide only when it is the speaker's own.
        cats = ("medical",) if reported else cats
    else:
        if reported and "abuse" not in cats:
            caps.append("reported about someone else")
        if _NO_INTENT.search(sentence):
            caps.append("ideation without intent")
        if "suicide" not in cats and _SOMETIMES.search(s[s0:a]):
            caps.append("recurring, not now")  # an urge to self-harm or hit someone "sometimes"
    up = None
    if level == "concern" and not caps and set(cats) & {"suicide", "self_harm", "harm_to_others"}:
        up = _escalation(s, a, b, cats)
    return [[rid, cats, "urgent" if up else level, a, b, caps, up]]


def detect(text: str, *, lang: str | None = None) -> Detection:
    """Detect crisis content in one message (Chinese, English or mixed).

    `lang` ("zh" or "en") restricts the rules to one language; by default both run,
    since code-switching ("我想 kms") is common.
    """
    if lang not in (None, "zh", "en"):
        raise ValueError(f"lang must be 'zh', 'en' or None, got {lang!r}")
    det = Detection()
    if not text or not text.strip():
        return det
    s, idx = normalize(text)
    langs = [lang] if lang else [lg for lg, rx in (("en", _HAS_LATIN), ("zh", _HAS_CJK)) if rx.search(s)]
    regions = _regions(s, langs)
    masked = [(m.start(), m.end()) for _, r0, r1 in regions for m in _MASK_RE.finditer(s, r0, r1)]
    preps = [m.span() for lg in langs for m in _PREP_BY_LANG[lg].finditer(s)]
    clauses, sentences = (_cuts(s, _CLAUSE), _cuts(s, _SENTENCE)) if regions or preps else (([], []), ([], []))
    found = []  # [rule id, categories, level, start, end, caps, escalation]
    seen = set()
    for rlang, r0, r1 in regions:
        for rid, cats, level, rx in _RULES_BY_LANG[rlang]:
            for m in rx.finditer(s, r0, r1):
                a, b = m.span()
                if (rid, a) in seen or any(a < me and ms < b for ms, me in masked):
                    continue
                seen.add((rid, a))
                found.extend(_judge(text, s, idx, det, rid, cats, level, a, b, clauses, sentences))
    if len({s[a:b] for a, b in preps}) >= 2:  # two different acts ("my cat's going to … deleted my accounts")
        for a, b in preps:
            found.extend(_judge(text, s, idx, det, "preparation", ("suicide",), "urgent", a, b, clauses, sentences))
    # A joke ("不想活了哈哈哈", "lol I'm dead") is capped at concern, never dismissed: unless
    # another risk signal stands beside it ("i just wanna die lol nothing matters").
    serious = [m.span() for m in _NOT_JOKING.finditer(s)]
    laughing = any(not any(a <= m.start() < b for a, b in serious) for m in _LAUGH.finditer(s))
    if laughing and len({f[0] for f in found}) == 1:
        for f in found:
            if "medical" not in f[1]:
                f[5].append("said laughing, no other risk signal")
    if not found and (mm := _MEANS_ONLY.search(s)) and (pm := _PLAN_ONLY.search(s)):
        found.append(["means_and_plan", ("suicide",), "urgent", mm.start(), mm.end(), [],
                      f"means with a plan: {pm.group()!r}"])
    for rid, cats, level, a, b, caps, up in found:
        notes = [up] if up else []
        if caps and level == "urgent":
            level = "concern"
            notes.append("capped at concern: " + ", ".join(caps))
        start, end = idx[a], idx[b - 1] + 1
        for cat in cats:
            det.evidence.append(Evidence(start, end, text[start:end], cat, rid))
        det.level = max_level(det.level, level)
        det.reasons.append(f"{level}: {text[start:end]!r} ({rid}, {'/'.join(cats)})" + (f" — {'; '.join(notes)}" if notes else ""))
    det.evidence.sort(key=lambda e: (e.start, e.end))
    present = {e.category for e in det.evidence}
    det.categories = [c for c in CATEGORIES if c in present]
    return det


def scan_corpus(conversations: Iterable, *, engine=None) -> Counter:
    """Count crisis levels over the user turns of a corpus: Counter({'none': n, 'concern': n, 'urgent': n}).

    Each user message counts once; `engine` is anything with `.detect(text)` (default: the rules).
    Also counts each category under 'category:<name>' for flagged turns.
    """
    run = engine.detect if engine is not None else detect
    counts: Counter = Counter({lv: 0 for lv in LEVELS})
    for conv in conversations:
        for msg in conv.messages:
            if msg.role != "user":
                continue
            d = run(msg.content)
            counts[d.level] += 1
            for c in d.categories:
                counts[f"category:{c}"] += 1
    return counts


# --- optional classifier engine ---------------------------------------------------------

CLASSIFIER_PROMPT = """You screen messages sent to a counseling service for crisis risk.
Levels: "urgent" = current intent, plan, means or an act under way to end one's life, self-harm now,
imminent harm to another person, violence against the writer happening now or a threat to their life,
or acute medical danger (overdose taken, cannot breathe, heavy bleeding); "concern" = passive wishes
to be dead, hopelessness, self-harm or abuse that is ongoing or in the past, a risk reported about
someone else; "none" = no risk, including idioms and jokes ("this exam is killing me", "笑死我了").
Categories: suicide, self_harm, harm_to_others, abuse, medical.
The message may be Chinese or English. Reply with ONLY a JSON object, no prose, no code fence:
{"level": "none"|"concern"|"urgent", "categories": [...], "reason": "<one short sentence>"}"""


class ClassifierError(Exception):
    """The endpoint answered with something that is not the strict JSON asked for."""


class ClassifierEngine:
    """Rules plus a model behind any OpenAI-compatible chat endpoint, combined by a fixed policy.

        eng = ClassifierEngine("http://localhost:8000/v1", model="qwen3-4b")  # key from $PSYASSIST_CRISIS_API_KEY
        eng.detect("I've been giving my things away")

    Policy: the rules always run.  Level = the higher of the rules' and the model's level,
    so the model can raise a level (it reads meaning the lexicon misses) but never lower one
    (a rules-urgent message stays urgent whatever the model says).  Categories = the union
    (the model's only when its level is not none).  Evidence spans come from the rules only.
    If the model's reply is not the strict JSON asked for, the request is retried
    `retries` times; if it still fails or the endpoint times out or errors, the rules'
    result is returned alone with a warning (engine "rules (classifier unavailable)").
    """

    def __init__(self, url: str, model: str, *, api_key_env: str = "PSYASSIST_CRISIS_API_KEY",
                 timeout: float = 10.0, retries: int = 1):
        base = url.rstrip("/")
        self.url = base if base.endswith("/chat/completions") else base + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.retries = retries

    def _ask(self, text: str) -> dict:
        body = json.dumps({
            "model": self.model, "temperature": 0, "max_tokens": 200,
            "messages": [{"role": "system", "content": CLASSIFIER_PROMPT}, {"role": "user", "content": text}],
        }).encode()
        headers = {"Content-Type": "application/json"}
        if key := os.environ.get(self.api_key_env):
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            payload = json.loads(resp.read().decode("utf-8"))
        try:
            content = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as e:
            raise ClassifierError(f"no choices[0].message.content in the reply: {str(payload)[:80]}") from e
        return parse_classifier_reply(content)

    def detect(self, text: str, *, lang: str | None = None) -> Detection:
        det = detect(text, lang=lang)
        if not text.strip():
            return det
        problem, verdict = "", None
        for _ in range(1 + self.retries):
            try:
                verdict = self._ask(text)
                break
            except ClassifierError as e:
                problem = f"bad reply ({e})"
            except (urllib.error.URLError, TimeoutError, OSError, ValueError) as e:
                problem = f"request failed ({getattr(e, 'reason', e)})"
                break  # an unreachable or slow endpoint is not retried: the rules answer now
        if verdict is None:
            warn(f"crisis classifier at {self.url}: {problem}; using the rules only")
            det.engine = "rules (classifier unavailable)"
            det.reasons.append(f"classifier unavailable: {problem}")
            return det
        level = max_level(det.level, verdict["level"])
        if level != det.level:
            det.reasons.append(f"{verdict['level']}: raised by the classifier — {verdict['reason']}")
        else:
            det.reasons.append(f"classifier says {verdict['level']}: {verdict['reason']}")
        det.level = level
        cats = set(det.categories) | (set(verdict["categories"]) if verdict["level"] != "none" else set())
        det.categories = [c for c in CATEGORIES if c in cats]
        det.engine = "rules+classifier"
        return det


def parse_classifier_reply(content: str) -> dict:
    """Strict parse of the model's JSON verdict; a ```json fence around it is tolerated."""
    s = content.strip()
    if s.startswith("```"):
        s = s.strip("`").removeprefix("json").strip()
    try:
        obj = json.loads(s)
    except json.JSONDecodeError as e:
        raise ClassifierError(f"not JSON: {content[:60]!r}") from e
    if not isinstance(obj, dict) or obj.get("level") not in LEVELS:
        raise ClassifierError(f"'level' must be one of {LEVELS}: {content[:60]!r}")
    cats = obj.get("categories", [])
    if not isinstance(cats, list) or not all(c in CATEGORIES for c in cats):
        raise ClassifierError(f"'categories' must be a list drawn from {CATEGORIES}: {content[:60]!r}")
    return {"level": obj["level"], "categories": cats, "reason": str(obj.get("reason", ""))[:300]}


def read_messages(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Messages to check from a file: [(where, text)].

    .jsonl: each line a JSON string, an object with "text", or a conversation with
    "messages" (its user turns); any other file: one message per non-empty line.
    """
    name = str(path)
    text, warning = read_text(path)
    if warning:
        warn(warning)
    lines = text.splitlines()
    if not name.removesuffix(".gz").endswith(".jsonl"):
        return [(f"{name}:{i}", ln) for i, ln in enumerate(lines, 1) if ln.strip()]
    out = []
    expected = "a JSON string, an object with a 'text' string, or a conversation with 'messages'"
    for i, ln in enumerate(lines, 1):
        if not ln.strip():
            continue
        try:
            obj = json.loads(ln)
        except json.JSONDecodeError as e:
            raise DataError(name, f"one JSON value per line ({e.msg})", line=i, got=ln[:40], reason="bad_json",
                            hint="") from e
        if isinstance(obj, str):
            out.append((f"{name}:{i}", obj))
        elif isinstance(obj, dict) and isinstance(obj.get("text"), str):
            out.append((f"{name}:{i}", obj["text"]))
        elif isinstance(obj, dict) and isinstance(obj.get("messages"), list):
            for j, m in enumerate(obj["messages"]):
                if not isinstance(m, dict) or not isinstance(m.get("content"), str):
                    raise DataError(name, "an object with a 'content' string", line=i, field=f"messages[{j}]",
                                    got=m, reason="bad_message", hint="")
                if m.get("role") == "user":
                    out.append((f"{name}:{i} messages[{j}]", m["content"]))
        else:
            raise DataError(name, expected, line=i, field="text", got=obj, reason="bad_record", hint="")
    return out
