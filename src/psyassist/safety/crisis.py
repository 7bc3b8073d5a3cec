"""Crisis detection in Chinese and English: clinical risk constructs read by a transparent rule engine.

    psyassist safety check "我今晚就从楼上跳下去" --region cn
    psyassist safety check "Client reports she has saved her pills and plans to take them Friday." --context counselor_note

`detect(text, *, lang=None, context="self") -> Detection` returns a level (none < concern <
urgent), the risk categories (suicide, self_harm, harm_to_others, abuse, medical), the
**constructs** the message shows, the evidence spans in the ORIGINAL text (each with its
construct) and human-readable reasons.  No model, no network; a 1,000-character message takes
about a millisecond (tests/test_crisis.py::test_speed_of_a_1000_character_message).

The constructs are those of the clinical screening instruments (docs/safety.md, "Constructs"):
the Columbia Suicide Severity Rating Scale (C-SSRS: wish to be dead, active ideation, method,
intent, plan, preparatory behaviour, aborted / interrupted / actual attempt), the NSSI literature
(self-harm and its escalation), the Danger Assessment for intimate-partner violence (lethality
markers: strangulation, a weapon, threats to kill or to repeat) and acute medical danger, plus
modifiers: time and immediacy, reassurance, history, third party, counselor note.

How a message is read, in order:

1. **Normalise**, keeping a map from every normalised character back to the original one:
   NFKC (ｋｉｌｌ → kill), lower case, traditional → simplified for the lexicon's characters,
   spacing tricks removed (自 杀, s u i c i d e, k*ll), apostrophes restored (im → i'm).  With
   `context="counselor_note"` the client is rewritten as the speaker first ("Client reports she
   has saved her pills" is read as "i report i have saved my pills"; 来访者说他 → 我说我), so every
   rule written for the first person applies to a counselor's note about their client, while
   other people in the note (her husband, 她朋友) stay third parties.
2. **Mask** idioms, jokes and topic talk (笑死, 饿得想死, "this exam is killing me", 自杀预防).
3. **Match** the construct rules (`_EN_RULES`, `_ZH_RULES`: id, construct, categories, level,
   pattern).  On its own a construct gives a level: active ideation, method, intent, a strong
   preparatory act, an attempt (in progress, just made, aborted or interrupted), NSSI escalation,
   an IPV lethality marker and medical danger are urgent; a passive wish to be dead, hopelessness,
   NSSI, abuse, harm-to-others thoughts and a bare mention of suicide are concern.
4. **Context** of each match: negation (dropped: "I'm not suicidal", 否认自杀意念), an accident or
   fiction (dropped), history (at most concern; for acts, only a distant past caps), a third party
   (at most concern, except medical danger), ideation stated without intent, a recurring urge,
   laughter as the only signal (at most concern).
5. **Combine**: a concern match of suicide, self-harm or harm to others becomes urgent when a
   supporting construct stands within 80 characters — a method or means, a plan, intent, a
   preparatory act, or a timeframe together with intent (self-harm: only timeframe with intent);
   abuse becomes urgent with a lethality marker (a weapon, escalation).  Two everyday preparatory
   acts (re-homing a pet, deleted accounts, a will) are urgent together, one alone is nothing; an
   acquired means with a specific plan is urgent.  A **reassurance** ("don't worry, I won't do
   anything", 放心) lowers ideation to concern but never erases it, and never lowers an act
   (preparation, attempt, means with a plan).

The level is the highest surviving match.  The rules are a lexicon, not understanding: see
docs/safety.md for the measured precision/recall, per construct, and the limits.
"""

from __future__ import annotations

import bisect
import functools
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
# Clinical constructs (C-SSRS, NSSI, Danger Assessment) and modifiers; the evaluation set labels items with the
# same names (docs/safety.md, "Constructs").
CONSTRUCTS = ("wish_dead", "active_ideation", "method", "intent", "plan", "preparatory", "attempt", "aborted_attempt",
              "nssi", "nssi_escalation", "ipv_lethality", "harm_others", "abuse", "medical_danger", "timeframe",
              "reassurance", "hopelessness", "history", "third_party", "counselor_note")
CONTEXTS = ("self", "counselor_note")
_RANK = {lv: i for i, lv in enumerate(LEVELS)}


@dataclass(frozen=True, slots=True)
class Evidence:
    start: int  # offsets into the ORIGINAL text: text[start:end] == self.text
    end: int
    text: str
    category: str
    rule: str
    construct: str = ""  # one of CONSTRUCTS: why these words count

    def as_tuple(self) -> tuple[int, int, str, str, str]:
        return (self.start, self.end, self.text, self.category, self.rule)


@dataclass(slots=True)
class Detection:
    level: str = "none"
    categories: list[str] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    engine: str = "rules"
    constructs: list[str] = field(default_factory=list)  # in CONSTRUCTS order

    @property
    def flagged(self) -> bool:
        return self.level != "none"

    def to_dict(self, *, include_text: bool = True) -> dict:
        """JSON-ready; include_text=False drops the matched words and the reasons (which quote them),
        keeping level, categories, constructs, offsets and rule ids: what a privacy-mode event log may hold."""
        ev = [{"start": e.start, "end": e.end, "category": e.category, "rule": e.rule, "construct": e.construct,
               **({"text": e.text} if include_text else {})} for e in self.evidence]
        return {"level": self.level, "categories": list(self.categories), "constructs": list(self.constructs),
                "evidence": ev, "reasons": list(self.reasons) if include_text else [], "engine": self.engine}


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

# More characters of the construct lexicon (issue 13).
_T2S.update(str.maketrans(
    "懸縫針監嚨攔繫係囑轉債淺頻櫃點劑變聲爭嚴裝試緊總稱訪狀況慮鬱悶淚腫脣暈嘔懷搶嬰視廚揚託寵養蹤臉膠窮瘋癮壞亂煩幫護綳濕燈樑掛鈕鐘餵單藥塊斷劇記終於態響談評權戲劍鉤緒鎮靜衛麼辦讀夥紙倆攬掙鬧漸歸絲厲與從鄉遠邊貼雙區屬雜傳確實檢驗證據還沒愛孫車輛線圍簡躍揮陣偵詢療醫顧殘損顯雖標準復並嗎趕兇擋鎖帳氣槍刪網蟲籤條",
    "悬缝针监咙拦系系嘱转债浅频柜点剂变声争严装试紧总称访状况虑郁闷泪肿唇晕呕怀抢婴视厨扬托宠养踪脸胶穷疯瘾坏乱烦帮护绷湿灯梁挂钮钟喂单药块断剧记终于态响谈评权戏剑钩绪镇静卫么办读伙纸俩揽挣闹渐归丝厉与从乡远边贴双区属杂传确实检验证据还没爱孙车辆线围简跃挥阵侦询疗医顾残损显虽标准复并吗赶凶挡锁帐气枪删网虫签条",
))

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




def _rewrite(s: str, idx: list[int], rx: re.Pattern, repl) -> tuple[str, list[int]]:
    """Replace matches of `rx` by repl(match) (None: keep), keeping the index map monotonic: the new
    characters spread over the replaced span, first to first and last to last ("her" → "me": m→h, e→r)."""
    out, out_idx, last = [], [], 0
    for m in rx.finditer(s):
        new = repl(m)
        if new is None or new == m.group():
            continue
        a, b = m.span()
        out.append(s[last:a])
        out_idx.extend(idx[last:a])
        out.append(new)
        n = len(new)
        out_idx.extend(idx[a + (k * (b - a - 1) // (n - 1) if n > 1 else 0)] for k in range(n))
        last = b
    if not out:
        return s, idx
    out.append(s[last:])
    out_idx.extend(idx[last:])
    return "".join(out), out_idx


# --- counselor notes: the client is the speaker ----------------------------------------------
#
# A counselor writes about their client in the third person ("Client reports she has saved her
# pills", 来访者说他已经写好了遗书).  With context="counselor_note" the client's mentions and the
# client's pronouns are rewritten to the first person before the rules run, so the whole lexicon
# applies; the index map keeps evidence in the original words.  The client's pronoun is the
# first he/she/they that is not right after another person (her husband … he), preferring one
# that reports (she says, 她说).  Limit: a third party of the client's gender referred to by a bare
# subject pronoun right after its noun stays a third party ("her sister said she …"), but a bare
# pronoun far from its noun is read as the client.
_KIN_EN = (r"friend|best friend|bestie|brother|sister|mom|mum|mother|dad|father|son|daughter|roommate|flatmate|classmate"
           r"|wife|husband|partner|boyfriend|girlfriend|bf|gf|ex|ex-partner|ex-husband|ex-wife|ex-boyfriend"
           r"|ex-girlfriend|colleague|coworker|boss|teacher|cousin|uncle|aunt|grandma|grandmother|grandpa"
           r"|grandfather|stepdad|stepmom|stepmum|stepfather|stepmother|neighbou?r|kid|child|baby|fianc[ée]e?"
           r"|spouse|parent|parents|sibling|manager|doctor|therapist|officer|stranger|guy|man|woman|someone")
_CLIENT_EN = re.compile(r"\b(?:the |my |our |this |said )?(?:client|patient|pt|counsell?ee|service user)('s)?\b", re.ASCII)
_PRONOUN_EN = {"she": ("she", "her", "hers", "herself"), "he": ("he", "him", "his", "himself"),
               "they": ("they", "them", "their", "theirs", "themselves", "themself")}
_SUBJ_EN = re.compile(r"\b(she|he|they)\b", re.ASCII)
_REPORTS_EN = re.compile(r"\s+(?:also |later |then |now |again )?(?:reports?|reported|says?|said|states?|stated|denie[sd]"
                         r"|den(?:y|ies)|disclosed?|discloses|describes?|described|endorses?|endorsed|admits?|admitted"
                         r"|told|tells|shared|shares|mentioned|mentions|expressed|expresses|explained|explains)\b", re.ASCII)
_AFTER_KIN_EN = re.compile(rf"\b(?:{_KIN_EN})(?:'s)?(?: \w+){{0,3}} $", re.ASCII)
_KIN_ZH = re.compile(r"有人|别人|朋友|同学|室友|妈妈|爸爸|母亲|父亲|儿子|女儿|弟弟|妹妹|哥哥|姐姐|老公|丈夫|老婆|妻子|男朋友|女朋友"
                     r"|男友|女友|前夫|前妻|前任|同事|老板|老师|孩子|继父|继母|奶奶|爷爷|外婆|外公|邻居|伴侣|对象|表姐|表妹|表哥|表弟"
                     r"|堂姐|堂妹|堂哥|堂弟|闺蜜|舍友")
_CLIENT_ZH = re.compile(r"(?:该|这位|此)?(?:来访者|当事人|患者|求助者|咨客|案主|个案|病人)|其(?=自述|表示|称|说|提到|报告|否认|承认|坦言|透露)")
_SUBJ_ZH = re.compile(r"[他她]")
_REPORTS_ZH = re.compile(r"(?:也|还|又)?(?:说|表示|提到|称|自述|反映|报告|否认|承认|坦言|透露|告诉|讲|谈到|描述)")
_AFTER_KIN_ZH = re.compile(rf"(?:{_KIN_ZH.pattern})\S{{0,3}}$")
_KIN_SAYS_ZH = re.compile(rf"(?:{_KIN_ZH.pattern})\S{{0,2}}(?:说|讲|告诉我?|提到|表示|觉得)$")
_THIRD_SG = re.compile(r"\bi (is|isn't|has|hasn't|does|doesn't|was|wasn't|[a-z]{2,}(?:ies|ches|shes|sses|xes|s))\b", re.ASCII)
_AGREE = {"is": "am", "isn't": "am not", "has": "have", "hasn't": "haven't", "does": "do", "doesn't": "don't",
          "was": "was", "wasn't": "wasn't"}
_NO_S_VERB = {"always", "was", "has", "is", "does", "its", "this", "thus", "yes", "perhaps", "less", "unless", "across",
              "famous", "serious", "nervous", "anxious", "various", "obvious", "jealous", "dangerous", "suicidal"}


def _client_pronoun(s: str, zh: bool) -> str | None:
    """The pronoun the note uses for the client: she / he / they (English) or 她 / 他, or None."""
    subj, reports, after_kin = (_SUBJ_ZH, _REPORTS_ZH, _AFTER_KIN_ZH) if zh else (_SUBJ_EN, _REPORTS_EN, _AFTER_KIN_EN)
    first = None
    for m in subj.finditer(s):
        if after_kin.search(s[max(0, m.start() - 40):m.start()]):
            continue  # "her husband … he", 她老公说他: that pronoun is the other person
        if reports.match(s, m.end()):
            return m.group()  # "she says", 她表示: the one the note is about
        first = first or m.group()
    return first


_ABBREV = re.compile(r"\b(si|hi)\b", re.ASCII)
_ABBREV_FULL = {"si": "suicidal ideation", "hi": "homicidal ideation"}


def _client_as_self(s: str, idx: list[int], text: str) -> tuple[str, list[int]]:
    """Rewrite a counselor's note so that the client is the speaker (see the comment above); the clinical
    abbreviations SI and HI (in capitals, as notes write them) are spelled out."""
    s, idx = _rewrite(s, idx, _ABBREV, lambda m: _ABBREV_FULL[m.group(1)]
                      if text[idx[m.start()]:idx[m.end() - 1] + 1].isupper() else None)
    if _HAS_CJK.search(s):
        s, idx = _rewrite(s, idx, _CLIENT_ZH, lambda m: "我")
        if (p := _client_pronoun(s, zh=True)) is not None:
            text = s  # 她朋友说她想死: the second 她 is the friend; 她男朋友打她: the client
            s, idx = _rewrite(s, idx, re.compile(p), lambda m: None if _KIN_SAYS_ZH.search(
                text[max(0, m.start() - 10):m.start()]) else "我")
    if _HAS_LATIN.search(s):
        s, idx = _rewrite(s, idx, _CLIENT_EN, lambda m: "my" if m.group(1) else "i")
        if (p := _client_pronoun(s, zh=False)) is not None:
            forms = _PRONOUN_EN[p]
            rx = re.compile(rf"\b({'|'.join(forms)})(?:('s|'ll|'d|'ve|'re))?\b", re.ASCII)
            text = s

            def first_person(m: re.Match) -> str | None:
                w, tail = m.group(1), m.group(2) or ""
                if w == forms[0]:  # subject: not when it follows another person ("her sister said she")
                    if _AFTER_KIN_EN.search(text[max(0, m.start() - 40):m.start()]):
                        return None
                    return "i" + {"'s": "'m", "'re": "'m"}.get(tail, tail)
                if w == forms[-1] or w == "themself":
                    return "myself"
                if w in ("hers", "theirs"):
                    return "mine"
                if w == "his" or w == "their":
                    return "my"
                if w == "him" or w == "them":
                    return "me"
                # "her": possessive before a noun ("her pills"), object otherwise ("hit her")
                nxt = re.match(r" ([a-z][\w'-]*)", text[m.end():])
                return "my" if nxt and nxt.group(1) not in _NOT_A_NOUN else "me"

            s, idx = _rewrite(s, idx, rx, first_person)
        s, idx = _rewrite(s, idx, _THIRD_SG, _first_person_verb)
    return s, idx


_NOT_A_NOUN = {"and", "or", "but", "to", "that", "the", "a", "an", "in", "on", "at", "with", "for", "of", "from", "about",
               "again", "if", "when", "so", "because", "up", "down", "out", "off", "back", "away", "anymore", "any",
               "some", "too", "very", "not", "into", "onto", "over", "by", "as", "is", "was", "until", "unless",
               "while", "after", "before", "every", "last", "this", "then", "now", "once", "twice", "badly", "hard"}


def _first_person_verb(m: re.Match) -> str:
    """'i has' → 'i have', 'i wants' → 'i want' after a rewritten subject."""
    v = m.group(1)
    if v in _AGREE:
        return "i " + _AGREE[v]
    if v in _NO_S_VERB or v.endswith(("ss", "us", "ous")):
        return m.group()
    if v.endswith("ies") and len(v) > 4:
        return "i " + v[:-3] + "y"
    if v.endswith(("ches", "shes", "sses", "xes")):
        return "i " + v[:-2]
    return "i " + v[:-1]


# --- rules ---------------------------------------------------------------------------
#
# (rule id, construct, categories, level on its own, pattern).  Patterns run on normalised text.
# English patterns use [\w'] for "a word" so that "mum's" and "i've" count as one.
_ME = r"(?:my ?self|my own life|my life)"
_OBJ = (r"(?:him|her|them|(?:my|the|that|this|those|his|her) (?:boss|ex|wife|husband|(?:step ?)?(?:dad|father|mom|mum|mother)"
        r"|brother|sister|baby|kids?|child|son|daughter|neighbou?r|teacher|coworker|colleague|partner|boyfriend|girlfriend"
        r"|family|people|students|classmates?|roommate|flatmate|bully|bullies|guy|man|woman|kids who \w+ me))")
# Medicines by their everyday names: an overdose or a stockpile is rarely called "pills".
_DRUG = (r"(?:pills|tablets|meds|medication|medicine|medicines|painkillers|antidepressants|sleeping (?:pills|tablets)"
         r"|tylenol|paracetamol|acetaminophen|ibuprofen|advil|aspirin|insulin|xanax|benzos|lithium|oxy(?:codone|contin)?"
         r"|opioids|morphine(?: patches)?|fentanyl(?: patches)?|codeine|tramadol|diazepam|valium|zopiclone|ambien"
         r"|seroquel|quetiapine|amitriptyline|sertraline|prozac|capsules|sleepers)")
_W = r"[\w'-]+ "  # one word and its space
# Where a fall happens: an attempt in progress or an aborted one is told by place + a cue.
_HEIGHT = (r"(?:roof(?:top)?s?|ledge|railing|rail|parapet|bridge|overpass|flyover|cliffs?(?: edge)?|balcony|window ?(?:sill|ledge)?"
           r"|top floor|top of the (?:car park|parking garage|building|stairs|tower)|car park|parking (?:garage|structure)"
           r"|tower|edge(?! of (?:the |my |a )?(?:pool|bed|seat|table|couch|sofa|road|stage|desk|field|town|world))|platform|tracks"
           r"|railway(?: line| tracks)?|train (?:line|tracks)|level crossing|wall|dam|pier)")
_NO_RETURN = (r"(?:don't|do not) want to (?:climb|go|come|get|step|turn|walk) (?:back|down|in|inside|home|over)"
              r"|(?:not|never|won't) (?:be )?(?:coming|going|climbing|getting|walking) (?:back|down|home|inside)"
              r"|no (?:going|turning) back|can't go back|not turning back|(?:looking|look|staring|stare) down"
              r"|so high|one (?:more )?step|let(?:ting)? go|the water|the drop|the wind|down there|below me"
              r"|goodbye|over the (?:rail|railing|edge|side)|(?:my )?legs (?:are )?(?:dangling|hanging|over)"
              r"|(?:no|can't think of a|can't think of any|don't have a|not a single) reason to (?:go|come|get|climb) (?:home|back|down)"
              r"|the (?:next )?train (?:is )?(?:due|coming)|(?:it'd|it would) be (?:so )?easy")
_MEANS_HELD = r"(?:pills|tablets|meds|capsules|sleeping pills|knife|blade|razor|gun|rope|noose|belt)"

_EN_RULES: list[tuple[str, str, tuple[str, ...], str, str]] = [
    # --- suicide: active ideation (C-SSRS 2) ---------------------------------------------------
    ("en.kill_self", "active_ideation", ("suicide",), "urgent",
     rf"\b(?:kill|killing|end|ending|take|taking|off|offing)\s+{_ME}\b"),
    ("en.kill_self_3p", "active_ideation", ("suicide",), "concern", r"\b(?:kill|killing|killed|kills)\s+(?:him|her|them)sel(?:f|ves)\b"),
    ("en.end_life_3p", "active_ideation", ("suicide",), "concern", r"\b(?:end|ending|take|taking|took)\s+(?:his|her|their) (?:own )?life\b"),
    ("en.want_die", "active_ideation", ("suicide",), "urgent",
     r"\b(?:want|wants|wanted|wanna|going|gonna|ready|need|needs) (?:to )?die\b|\bi want to be dead\b"),
    ("en.not_live", "active_ideation", ("suicide",), "urgent",
     r"\b(?:don't|do not|no longer) want to (?:live|be alive|exist)\b|\bcan't go on living\b"),
    ("en.end_it", "active_ideation", ("suicide",), "urgent",
     r"\bend(?:ing)? it all\b|\b(?:going to|gonna|want to|wanna|about to|thought about|thinking about) end(?:ing)? it\b"
     r"|\b(?:going to|gonna|want to|wanna|about to|decided to|ready to) end (?:things|everything|my suffering|my existence)\b"),
    ("en.suicidal_now", "active_ideation", ("suicide",), "urgent", r"\bi(?:'m| am) (?:feeling |so |really )?suicidal\b"
     r"|\bactive (?:suicidal ideation|si)\b"),
    ("en.commit", "active_ideation", ("suicide",), "urgent", r"\b(?:commit|committing) suicide\b|\bunalive\b|\bkms\b"),
    ("en.suicide", "active_ideation", ("suicide",), "concern", r"\bsuicid(?:e|al)\b|\bsewer ?-?slid(?:e|al)\b"),
    ("en.decided", "intent", ("suicide",), "urgent",
     r"\b(?:decided|made up my mind|made my decision|made the decision) (?:about |on |to )(?:dying|die|end(?:ing)? (?:it|my life)"
     r"|kill(?:ing)? myself|go(?:ing)? through with it|not (?:be|being) here)\b"),
    # --- suicide: method (C-SSRS 3) -------------------------------------------------------------
    ("en.jump", "method", ("suicide",), "urgent",
     r"\b(?:i'm|i am|i'll|i will|going to|gonna|about to|want to) (?:going to )?jump\b(?! out of (?:a|an|the) (?:air)?plane"
     r"| (?:in|into|on|onto|in to) (?:the |a |my )?(?:pool|shower|car|bed|game|call|meeting|queue|line|conversation|fun"
     r"|trampoline|action|chat|bandwagon|bath)| (?:at|to conclusions|ship|the gun|rope|around|up|for joy|on it)\b)"
     r"|\bjump in front of\b"),
    ("en.hang", "method", ("suicide",), "urgent", r"\bhang(?:ing)? myself\b"),
    ("en.crash", "method", ("suicide",), "urgent", r"\b(?:going to|gonna) (?:drive|crash) (?:my car )?into\b"),
    ("en.overdose_plan", "method", ("suicide",), "urgent",
     r"\b(?:going to|gonna|plan(?:ned|ning)? to|plans to|want to|about to) (?:overdose|od)\b"
     r"|\b(?:use|using) (?:it|the gun|a gun|them) on myself\b|\bturn the gun on myself\b"),
    ("en.method_thoughts", "method", ("suicide",), "urgent",
     r"\b(?:think|thinking|thought|thoughts) (?:about|of) (?:jumping (?:off|from|in front)|hanging myself|overdosing"
     r"|drowning myself|stepping in front of|throwing myself|driving (?:my car )?(?:off|into)|slitting my|taking all (?:my|the|of)"
     r"|swallowing all)\b|\bhow easy it would be to (?:just )?(?:jump|step off|let go|fall|drive off|swerve|crash|take them all"
     r"|end it|take all)\b"),
    # --- suicide: preparatory behaviour (C-SSRS 6) ------------------------------------------------
    ("en.stockpile", "preparatory", ("suicide",), "urgent",
     rf"\b(?:sav(?:e|ed|ing)|stockpil\w+|stock(?:ing|ed)? up on|hoard(?:ed|ing)?|collect(?:ed|ing)?|stash(?:ed|ing)?|put(?:ting)? aside|set(?:ting)? aside"
     rf"|squirrel(?:l)?(?:ed|ing) away|gather(?:ed|ing)?|amass(?:ed|ing)?|got my hands on) (?:up )?(?:{_W}){{0,4}}?(?<!vintage )(?<!antique )(?<!empty )"
     rf"{_DRUG}\b(?! (?:from|at) the pharmacy| bottles| cabinet| boxe?s?| labels| samples)"
     rf"|\bhaven't been taking my {_DRUG} (?:so|because|and)\b"
     rf"|\benough (?:{_W}){{0,2}}?{_DRUG} (?:to|that|so) (?:{_W}){{0,3}}?(?:die|kill|not wake|never wake|do it|end|be fatal|be sure|finish)"
     r"|\benough (?:[\w'-]+ ){0,3}?to (?:not wake up|never wake up|make sure i (?:never|don't) wake up)\b"),
    ("en.means_ready", "preparatory", ("suicide",), "urgent",
     r"\b(?:i have|i've got|i got) (?:the|my|all the|enough) pills ready\b(?! for)"),
    ("en.research", "preparatory", ("suicide",), "urgent",
     r"\b(?:lethal|fatal|deadly) (?:dose|amount|overdose|level)\b|\bpainless (?:way|death|method)s?\b"
     r"|\b(?:quickest|fastest|easiest|surest|least painful|most painless|best|most effective) (?:way|method|ways|methods) "
     r"(?:to (?:die|go|end it|kill (?:myself|yourself|oneself))|of (?:dying|suicide|killing))\b"
     r"|\bhow to (?:kill myself|die|end (?:it|my life)|commit suicide|overdose|hang (?:myself|yourself))\b"
     r"|\bwhich (?:overdose|pills?|method|way|bridge|building) (?:is|would be|are) (?:the )?(?:least painful|most painless|quickest"
     r"|fastest|surest|most effective|highest|tallest|best)\b"
     rf"|\bhow (?:many|much) (?:of )?(?:{_W}){{0,3}}?(?:{_DRUG}|paracetamol|insulin) (?:it )?(?:would|will|it'd|to|does it|do you need to"
     r"|would it) (?:take|kill|be fatal|be lethal|be enough)\b|\bhow many pills (?:it takes|to die|would)\b"
     r"|\bhow long (?:it )?(?:takes|would take|would it take|does it take|it takes) to (?:die|bleed out|suffocate|drown|lose consciousness)\b"
     r"|\bhow (?:high|tall|far) (?:[\w'-]+ ){0,4}?(?:to (?:die|be fatal|kill)|you (?:have|need) to (?:fall|jump))\b"
     r"|\b(?:looked up|look up|googled|searched|researched|checked) (?:[\w'-]+ ){0,6}?(?:highest|tallest) (?:[\w'-]+ ){0,3}?"
     r"(?:bridge|building|cliff|tower|car park|parking garage)\b"
     r"|\b(?:looked up|look up|googled|searched|researched|checked) (?:which|what|the) (?:bridge|building|cliff|tower|car park)"
     r" (?:[\w'-]+ ){0,6}?(?:the )?(?:highest|tallest|high enough)\b"),
    ("en.note", "preparatory", ("suicide",), "urgent",
     r"\bsuicide note\b|\b(?:wrote|written|writing|left|finished|typed|drafted|leaving) (?:goodbye |farewell |last |final )"
     r"letters? (?:to|for) |\b(?:wrote|written|writing|left|finished|typed|drafted|leaving) letters? (?:to|for) (?:each of )?(?:my )?"
     r"(?:family|parents|mom|mum|dad|kids|children|husband|wife|partner|everyone|everybody|loved ones|all of (?:them|you|my (?:family|kids)))\b"
     r"|\bmy (?:goodbye|farewell|last|final) (?:letters?|notes?|texts?|messages?|videos?|emails?)\b"
     r"|\b(?:for|to (?:watch|read|open|have)) (?:[\w'-]+ ){0,5}?(?:when|after|once) i(?:'m| am) (?:gone|dead|no longer (?:here|around))\b|\b(?:wrote|written|writing|left|finished|leaving|recorded|sent) (?:a |my |the |some )?(?:goodbye|farewell|last|final)"
     r" (?:notes?|letters?|messages?|texts?|videos?|emails?|voice ?(?:notes?|memos?))\b"
     r"|\b(?:wrote|written|writing|left) (?:a |my )?(?:goodbye |farewell |last )?notes? (?:to|for) (?:my )?(?:family|parents|mom|mum"
     r"|dad|kids|children|husband|wife|partner|everyone|everybody|loved ones)\b"
     r"|\b(?:letters?|notes?)\b[^!?]{0,25}?\b(?:one|a letter|a note) for (?:my )?[\w']+,? (?:and )?(?:one|a letter|a note) for\b"
     r"|\b(?:letters?|notes?) (?:to|for) (?:each of|every one of|all of) (?:my|them)\b"),
    ("en.gave_away", "preparatory", ("suicide",), "urgent",
     r"\b(?:gave|giving|given|give) away (?:all (?:of )?|most of |everything|the last of )?my\b(?! (?:old|spare|extra|unwanted|used"
     r"|outgrown|baby|kids'))|\b(?:gave|giving|given) away everything\b"
     r"|\b(?:gave|giving|given) (?:all )?my (?:things|stuff|belongings|possessions|cat|dog|pets?) (?:away|to)\b"
     r"|\bwho (?:gets|will get|should get|can have|will have|inherits|is getting) my\b"),
    ("en.goodbye", "preparatory", ("suicide",), "urgent",
     r"\bthis is goodbye\b|\bsaid my goodbyes\b|\bsay(?:ing)? my (?:last )?goodbyes\b|\bmy (?:final|last) words\b"
     r"|\bby the time you read this\b|\btell (?:my )?\w+ i'm sorry\b|\bwon't need (?:them|it) where i'm going\b"
     r"|\bwon't (?:be )?need(?:ing)? (?:(?:these|this|those|my|the) \w+|them|it) (?:any ?more|where i'm going)\b"
     r"|\bnothing left to (?:sort out|settle|arrange)\b|\b(?:put|putting|got) my affairs in order\b"
     r"|\btied up (?:all )?(?:the )?loose ends\b"),
    ("en.burden_soon", "intent", ("suicide",), "urgent",
     r"\bwon't be (?:a burden|around|here) (?:much|for) (?:longer|long)\b"
     r"|\b(?:nobody|no one|you|they|everyone) (?:will|'ll|won't) (?:\w+ )?(?:have|need) to (?:deal with|worry about|put up with"
     r"|take care of|look after) me (?:any ?more|after|much longer|soon)\b"
     r"|\b(?:my )?last (?:night|nite|day|sunset) (?:on (?:this )?earth|alive|of my life)\b"),
    ("en.cant_stay_safe", "intent", ("suicide",), "urgent", r"\b(?:can't|cannot|don't think i can) keep myself safe\b"),
    # --- suicide: actual attempt, in progress or just made ----------------------------------------
    ("en.ledge", "attempt", ("suicide",), "urgent",
     r"\b(?:sitting|standing|sat|stood|i'm|i am|climbed) (?:\w+ ){0,2}?(?:on|over|onto) (?:the|a|my) (?:ledge|railing"
     r"|(?:train )?tracks|edge of (?:the|a|my) (?:roof|bridge|building|balcony|cliff|platform))\b"
     r"|\b(?:wrong|other|outer|outside) side of the (?:railing|rail|fence|barrier|parapet|guardrail|balcony)\b"
     r"|\b(?:legs|feet) (?:are |were )?(?:dangling|hanging) (?:over|off) (?:the )?(?:edge|side|ledge|roof|bridge)\b"
     r"|\bclimb(?:ing|ed|s)? (?:over|onto|up on|on) (?:the|a) (?:railing|rail|barrier|parapet|ledge|balcony (?:rail|railing|wall)|fence of the bridge)\b"
     r"|\bi (?:had|held|put|pressed|was holding) (?:the|a|my) (?:blade|knife|razor|gun) (?:against|to|on|in) my (?:wrists?|arm|throat"
     r"|neck|head|temple|mouth|chest)\b"),
    ("en.at_height", "attempt", ("suicide",), "urgent",
     rf"\b(?:i'm|i am|im|standing|sitting|sat|stood|lying|climbed|perched|up) (?:{_W}){{0,4}}?(?:on|at|onto|over|up on|on top of|in) "
     rf"(?:the|a|my|this) (?:{_W}){{0,2}}?{_HEIGHT}\b(?=[^.!?]{{0,30}}(?:right now|now|rn)\b[^.!?]{{0,80}}|[^!?]{{0,90}}?(?:{_NO_RETURN}))"),
    ("en.attempt_act", "attempt", ("suicide",), "urgent",
     r"\bstarted taking the pills\b|\b(?:engine|car) (?:is |'s )?(?:running|on) (?:in|inside) (?:the |my )?(?:closed |shut )?garage\b"
     r"|\bin the (?:closed |shut )?garage with the (?:engine|car) (?:running|on)\b"
     r"|\b(?:tied|fastened|knotted|put|hung|got|have|had) (?:the |a |my )?(?:rope|noose|belt|cord|cable|scarf) (?:around|round|to|over|on)"
     r" (?:my neck|the (?:beam|rail|banister|door|ceiling|hook|closet rod|tree|branch))\b"
     r"|\b(?:rope|noose|belt|cord|cable) (?:around|round) my neck\b"
     r"|\b(?:lit|lighting|burning) (?:the )?(?:charcoal|coals?|bbq|barbecue) (?:in|inside) (?:the |my )?(?:room|bedroom|car|bathroom|tent"
     r"|flat|apartment)\b|\bi(?:'ve| have)? (?:already )?(?:started|done it|taken them|swallowed them)\b(?= (?:[\w'-]+ ){0,4}?"
     r"(?:pills|tablets|it's too late|too late|no going back))"),
    # An attempt without a time is a history (concern); a recent one (C-SSRS: the past three months) is urgent.
    ("en.attempted", "attempt", ("suicide",), "concern",
     r"\b(?:attempted|tried to) (?:suicide|kill myself|end my life|take my (?:own )?life|overdose|hang myself)\b"),
    ("en.attempted_recent", "attempt", ("suicide",), "urgent",
     r"\b(?:attempted|tried to) (?:suicide|kill myself|end my life|take my (?:own )?life|overdose|hang myself)\b"
     r"(?=[^.!?]{0,60}\b(?:yesterday|last night|last week|this week|last month|days ago|a few days ago|recently|this morning"
     r"|earlier today|an hour ago|on (?:monday|tuesday|wednesday|thursday|friday|saturday|sunday))\b)"
     r"|\b(?:yesterday|last night|last week|this week|last month|recently|this morning|earlier today) i (?:attempted|tried to)"
     r" (?:suicide|kill myself|end my life|take my (?:own )?life|overdose|hang myself)\b"),
    # --- suicide: aborted or interrupted attempt (C-SSRS) ---------------------------------------------
    ("en.aborted", "aborted_attempt", ("suicide",), "urgent",
     r"\b(?:was|were|i'm|i am) (?:about to|this close to|so close to|seconds (?:away )?from|moments (?:away )?from|on the verge of"
     r"|ready to|going to|gonna) (?:jump\w*|take (?:them|the pills|it all|all)|swallow\w*|do it|go(?:ing)? through with it"
     r"|pull(?:ing)? the trigger|step(?:ping)? (?:off|out)|let(?:ting)? go|end(?:ing)? (?:it|my life)|kill(?:ing)? myself"
     r"|hang(?:ing)? myself)\b(?=[^.!?]{0,60}?\b(?:but|until|when|then|before)\b)"
     r"|\b(?:almost|nearly|very nearly|came (?:so |this )?close to|so close to) (?:jump(?:ed|ing)(?! out of my skin| for joy| at)"
     r"|took (?:them|the pills|all|the lot|my pills|the tablets|everything)|swallow(?:ed|ing) (?:them|the|all)|did it\b|doing it\b"
     r"|went through with it|going through with it|killed myself|killing myself|ended (?:it|my life)|ending (?:it|my life)"
     r"|stepped off|stepping off|let go|letting go|hang(?:ed|ing) myself|hung myself|overdos(?:ed|ing)|pulled the trigger)"
     r"|\b(?:intending|intended|meaning|meant|planned|went there|drove there) to (?:jump|die|end it|end my life|kill myself"
     r"|overdose|hang myself|not come back|walk into the (?:sea|water|river))\b"
     r"|\b(?:got|made it|went|walked|drove) (?:as far as|all the way to|out to|up to) (?:[\w'-]+ ){0,6}?(?:bridge|edge|roof|cliffs?|ledge"
     r"|railing|tracks|platform|river|sea|coast)\b[^.!?]{0,40}?\b(?:turned (?:around|back)|came (?:back|home)|went home|walked (?:back|home)"
     r"|couldn't|stopped)\b"
     r"|\b(?:couldn't|could not|didn't|did not) (?:go through with it|make myself (?:jump|step|do it|let go|take them|pull|go through))"
     r"|\b(?:backed out|changed my mind|stopped myself|pulled back) at the (?:last|final) (?:minute|second|moment)\b"
     r"|\bclimbed back (?:over|down|in|inside) (?:the )?(?:railing|rail|fence|ledge|edge|barrier|window)\b"
     rf"|\b{_MEANS_HELD}\b[^.!?]{{0,80}}?\bput (?:them|it) (?:back|away|down)\b"
     rf"|\b(?:had|held|holding|was holding|poured|tipped|emptied) (?:all )?(?:the |my |a handful of |some )?{_MEANS_HELD}"
     r" (?:out )?(?:in|into) my (?:hand|hands|palm|mouth)\b(?=[^.!?]{0,80}?\b(?:but|until|when|then|stopped|couldn't|put them))"
     r"|\b(?:talked|talk|talking) me (?:down|off) (?:from|off)? ?(?:the )?(?:ledge|edge|roof|bridge|railing)\b"
     rf"|\b(?:found|caught|walked in on|stopped|grabbed|pulled|dragged) me (?:{_W}){{0,3}}?(?:with (?:the |a |my )?(?:rope|noose|belt|cord"
     r"|pills|tablets|knife|blade|razor|gun|bag) (?:around|in|on|to)|(?:off|down from|back from|away from) (?:the )?(?:ledge|edge"
     r"|railing|roof|bridge|window|tracks|balcony)|before i (?:could )?(?:jump|took|take|did|do it|swallowed|cut|went through))"
     r"|\b(?:stood|sat|was standing|was sitting|spent (?:[\w'-]+ ){0,3}?) (?:on|at) (?:the |a )?(?:edge of (?:the |a )?)?(?:ledge"
     r"|railing|parapet|wrong side)\b"
     rf"|\b(?:stood|sat|waited|was|spent (?:[\w'-]+ ){{0,2}}?) (?:on|at|by) (?:the|a|that) (?:{_W}){{0,2}}?{_HEIGHT}\b[^.!?]{{0,40}}?"
     r"\b(?:for (?:an hour|hours|a long time|ages|a while|\d+ (?:minutes|hours)|the whole night|most of the night))"
     r"[^.!?]{0,30}?\b(?:before|then|until|and) (?:i )?(?:walk\w*|went|came|climb\w*|got|go|going|coming|drove) (?:home|back|down|off|away)\b"),
    # --- suicide: wish to be dead (C-SSRS 1), passive ------------------------------------------------
    ("en.disappear", "wish_dead", ("suicide",), "concern",
     r"\b(?:wish|wishes|wished|want|wants|wanted|wanting) (?:i could |to )?(?:just )?(?:disappear|fade away|vanish)\b"),
    ("en.better_off", "wish_dead", ("suicide",), "concern",
     r"\bbetter off (?:\w+ ){0,6}?(?:without me|than with me)\b"
     r"|\b(?:better|happier|easier|simpler|lighter|a relief) (?:off )?(?:for (?:everyone|everybody|them|my family|all of them) )?"
     r"if i (?:just )?(?:wasn't|weren't|was not|were not|didn't exist|disappeared|died|was gone|were gone)\b"),
    ("en.not_here", "wish_dead", ("suicide",), "concern",
     r"\bif i (?:just )?(?:wasn't|weren't) here\b|\bnotice if i was gone\b|\bif i (?:was|were) gone\b"),
    ("en.wish_dead", "wish_dead", ("suicide",), "concern",
     r"\bwish i (?:were|was) dead\b|\bbetter off dead\b|\bwish i had never been born\b|\bdying would be a relief\b|\btired of living\b"
     r"|\bpoint (?:of|in) living\b|\bno reason to live\b|\bsleep forever\b|\bpassive (?:suicidal ideation|si)\b"
     r"|\b(?:think|thinking|thought|thoughts) (?:about|of) (?:dying|death|being dead|not being here)\b"),
    ("en.no_wake", "wish_dead", ("suicide",), "concern", r"\b(?:not|never|won't|don't want to|didn't|don't|wouldn't) wake up\b"
     r"|\b(?:wouldn't|would not|don't|do not) mind (?:not waking up|dying|being dead|not being here|not existing)\b"
     r"|\bpassive (?:death wish(?:es)?|suicidal thoughts)\b|\bdeath wish(?:es)?\b"
     r"|\b(?:want|wish|need) to (?:just )?(?:sleep|rest|disappear) and (?:never|not) (?:wake|come back|deal with (?:anything|it|this)"
     r"|have to (?:deal|face|wake))"
     r"|\b(?:hope|hoping|wish|pray|praying) (?:that )?i (?:get|got|catch|develop|had) (?:some |a )?(?:terminal|fatal|incurable)"
     r" (?:illness|disease|cancer)|\b(?:hope|hoping|wish) i get cancer\b"),
    ("en.rather_not_exist", "wish_dead", ("suicide",), "concern",
     r"\b(?:wish|wishing|want|wanted|wanna|rather|prefer|would like|like) (?:to |i could |i would |i'd |i )?(?:just )?(?:stop existing"
     r"|not exist|cease to exist|not be alive|not be here any ?more|be dead|go to sleep forever|disappear forever|fade away"
     r"|stop being alive|not have been born|never existed|never been born|had never existed)\b"
     r"|\b(?:don't|do not) want to be (?:here|around) any ?more\b"
     r"|\btired of (?:being alive|existing|life|it all|this life)\b|\b(?:done|finished) with (?:life|living|this life|it all"
     r"|existing)\b|\blife (?:isn't|is not|ain't) worth (?:living|it)\b|\bnot worth living\b"),
    ("en.stop_all", "wish_dead", ("suicide",), "concern",
     r"\b(?:want|wish|need|wanted|wanting)(?: for)? (?:everything|it all|all of it|all this|all of this|life|my life|the world) (?:to |would |could )?"
     r"(?:just )?(?:stop|end|be over|go away|go quiet)\b"
     r"|\b(?:want|wish|need)(?: for)? (?:it|the pain|this) (?:to |would )?(?:just )?(?:stop|end|be over)(?: (?:[\w'-]+ ){0,2}?)?"
     r"[,.]? ?(?:forever|for good|permanently|for ever)\b"),
    ("en.notice", "wish_dead", ("suicide",), "concern",
     r"\b(?:would|will|'d|does|did) (?:anyone|anybody|people|they|someone|my \w+) (?:[\w'-]+ ){0,2}?(?:notice|care|miss me|realise"
     r"|realize)\b(?=[^.!?]{0,40}?\b(?:if|when) i (?:[\w'-]+ ){0,2}?(?:disappeared|vanished|was gone|were gone|died|didn't|stopped"
     r"|left|wasn't here|weren't here|went missing|never came back)\b)"
     r"|\b(?:nobody|no one|no-one) (?:would|will|'d|'ll) (?:even )?(?:miss me|care if i)\b"
     r"|\bif i (?:just )?(?:disappeared|vanished|was gone|were gone|died|went missing|stopped existing|wasn't here|weren't here)\b"
     r"[^.!?]{0,30}?\b(?:would|will|'d) (?:anyone|anybody|people|someone|they|my \w+) (?:even )?(?:notice|care|miss me|realise|realize)\b"
     r"|\b(?:nobody|no one|no-one) (?:would|will|'d|'ll) (?:even )?(?:notice|care|realise|realize)\b(?=[^.!?]{0,30}?\b(?:if|when) i\b)"),
    ("en.accident_wish", "wish_dead", ("suicide",), "concern",
     r"\b(?:wouldn't|would not|won't|don't|do not) (?:care|mind) if (?:i (?:got )?(?:hit by|run over)|a (?:car|bus|truck|train|lorry)"
     r" (?:hit|hits|ran over|runs over|killed|kills) me|i (?:died|didn't wake up|never woke up|crashed|got sick and died)|i (?:just )?"
     r"(?:didn't|did not) (?:wake up|make it))\b"
     r"|\b(?:hope|hoping|wish|wishing|pray|praying) (?:that )?(?:the plane|my plane|the car|a car|a bus|a truck|someone|an accident"
     r"|something|cancer) (?:[\w'-]+ ){0,2}?(?:crash(?:es)?|hits? me|kills? me|runs? me over|would kill me|would hit me|takes me)\b"),
    ("en.funeral", "wish_dead", ("suicide",), "concern",
     r"\b(?:think|thinking|imagine|imagining|wonder|wondering|picture|picturing) (?:about )?(?:who would (?:come to|go to|show up at)"
     r" my funeral|my (?:own )?funeral|what it would be like (?:to be|if i was|if i were) dead|people (?:at|crying at) my funeral)\b"),
    # --- hopelessness and perceived burdensomeness -------------------------------------------------------
    ("en.hopeless", "hopelessness", ("suicide",), "concern",
     r"\bhopeless\b|\bno way out\b|\bdon't see a future\b|\blife (?:feels|is) pointless\b|\bnothing matters\b"
     r"|\bno point in (?:anything|living|going on|trying|being here)\b"
     r"|\bwhat'?s (?:even )?the point (?:of|in) (?:\w+ ){0,2}?(?:living|life|getting up|waking up|anything|trying|going on"
     r"|being alive|being here|it all)\b"
     r"|\bnothing (?:is|'s) ever going to (?:change|get better)\b|\bnothing will ever (?:change|get better)\b"
     r"|\b(?:it|things|life)(?: is|'s| are|'re)? never going to get better\b"
     r"|\b(?:don't|do not|can't|cannot) see (?:why|the point|a reason|any reason) (?:i should |to |of )?(?:keep going|go on|going on"
     r"|carry on|carrying on|continue|be here|stay|keep living|live)\b|\bno reason to (?:keep going|go on|carry on|get up)\b"
     r"|\bcan't (?:go on|keep going)(?: like this)?(?: any ?more)?\b"
     r"|\bno way (?:this|it|things|anything|life) (?:ever |will ever )?(?:gets?|will get|is going to get|'s going to get) better\b"
     r"|\b(?:there's |there is |have |has )?no future (?:for (?:me|someone like me|people like me))\b|\bi (?:have|'ve got) no future\b"
     r"|\b(?:can't think of|don't have|there's no|there is no) (?:a |any |one )?reason to (?:go on|keep going|live|stay|carry on)\b"),
    ("en.burden", "hopelessness", ("suicide",), "concern", r"\b(?:a|such a) burden (?:to|on) (?:everyone|everybody|my family|them)\b"
     r"|\bdragging (?:everyone|everybody|my family|them) down\b"),
    # --- self-harm (NSSI) and its escalation ---------------------------------------------------------
    ("en.sh_intent", "nssi", ("self_harm",), "urgent",
     r"\b(?:going to|gonna|want to|wanna|about to|need to) (?:\w+ )?(?:cut|hurt|burn|harm) myself\b"),
    ("en.sh", "nssi", ("self_harm",), "concern",
     r"\bself[- ]?harm(?:ing|ed)?\b|\bnssi\b|\b(?:cut|cutting|burn|burns|burned|burning|hurt|hurting|harm|harming|hit|hitting|punch|punching|slap|slapping|bite|biting"
     r"|punish|punishing|scratch|scratching|starve|starving|bruise|bruising)"
     r" (?:my|him|her)sel(?:f|ves)\b|\b(?:cut|slit|slashed) (?:my|her|his) wrists?\b|\bcutting again\b|\bstopped cutting\b"
     r"|\bhit my head against\b|\bused to cut\b|\b(?:scratch|scratching|scratched|pick|picking) (?:my )?(?:arms|skin|wrists|legs)"
     r" (?:until|till|til) (?:they|it) (?:bleed|bled|bleeds)\b"
     r"|\b(?:scratch\w*|pick\w*|dig\w*|rub\w*|claw\w*) (?:at )?my (?:arms|wrists?|skin|legs|thighs|hands|face) (?:[\w'-]+ ){0,4}?(?:until|till|til)"
     r" (?:they're|it's|they are|it is|they|it) (?:raw|bleed\w*|bled|bruised|scarred)\b"),
    ("en.sh_means", "nssi", ("self_harm",), "concern", r"\b(?:with|holding|have|got) (?:a |the |my )?(?:razor|blade)s?\b"),
    ("en.sh_escalation", "nssi_escalation", ("self_harm",), "urgent",
     r"\b(?:cut|cutting|cuts|burn\w*|went|go|going|gone) (?:way |much |a lot |even |[\w'-]+ )?(?:deeper|further|harder|worse)"
     r" (?:than (?:usual|normal|ever|before|last time|i (?:meant|intended|wanted|ever have))|this time|every time|each time|and deeper)\b"
     r"|\b(?:cuts?|wounds?|burns?) (?:are |is |keep |keeps )?(?:getting|gotten|going) (?:deeper|worse|bigger)\b"
     r"|\b(?:cut|cuts|cutting|wounds?|scars?|burns?|it) (?:[\w'-]+ ){0,3}?deeper (?:and deeper|every (?:time|week|day)|each time)\b|\bdaily and deeper\b|\bdeeper and more often\b"
     r"|\b(?:cut|cutting|burn|burning|hurt|hurting)(?: myself)? (?:more and more|more often|more every|every day now|daily now|a lot more)\b"
     r"|\b(?:cutting|self-harm|self harm|nssi|the cutting|the self-harm) (?:has|have) (?:escalated|increased|gotten worse|got worse|intensified)\b"
     r"|\b(?:cut|cuts?) (?:[\w'-]+ ){0,4}?(?:it's|it is|they're|so|really) deep\b|\bcan see (?:something white|the fat|fat|bone)\b"
     r"|\b(?:needed|need|needing|should (?:have|'ve) (?:had|gotten|got)|probably needed|had to get|got|getting) stitches\b"
     r"|\b(?:to|down to|through to) the (?:bone|fat|white (?:layer|stuff))\b"
     r"|\b(?:want|going|gonna|need|plan)(?: to)? (?:cut|go|burn) (?:[\w'-]+ ){0,2}?(?:deeper|further|all the way)\b"
     r"|\bthis time (?:i(?:'ll| will| want to| am going to|'m going to) )?(?:cut|go) (?:deeper|further|all the way)\b"
     r"|\b(?:deep|bad) enough (?:that|to) (?:it )?(?:really )?(?:counts?|matters?|kills?|ends?)\b"),
    ("en.sh_tolerance", "nssi_escalation", ("self_harm",), "concern",
     r"\b(?:scratching|cutting|the cuts?|burning|hitting myself|the usual|hurting myself|the pain)(?: myself)? (?:doesn't|does not"
     r"|don't|isn't|is not|aren't|stopped|no longer) (?:do(?:ing)? anything|work(?:ing|s)?|help(?:ing|s)?|enough|feel(?:ing)? like"
     r" enough|cut(?:ting)? it)(?: for me)?(?: any ?more)?\b|\b(?:switched|moved|gone|went) from (?:[\w'-]+ ){1,3}to (?:cutting"
     r"|burning|a razor|blades|knives|the knife)\b"),
    # --- harm to others ----------------------------------------------------------------------------
    ("en.harm_intent", "harm_others", ("harm_to_others",), "concern",
     rf"\b(?:want|wants|going|gonna|plan|plans|planning|will|i'll|he'll|she'll)\s+(?:to\s+)?(?:\w+\s+){{0,6}}?"
     rf"(?:kill|stab|shoot|hurt|murder|attack|strangle|poison)\s+{_OBJ}"),
    ("en.harm_thoughts", "harm_others", ("harm_to_others",), "concern",
     rf"\bthoughts? (?:about|of) (?:hurting|killing|harming|attacking) (?:people|others|someone|{_OBJ})"
     rf"|\b(?:could|might|may|will|'ll|would) (?:really |seriously |badly |actually )?(?:hurt|kill|harm|strangle|choke) {_OBJ}|\b(?:fantasi[sz]e|fantasi[sz]ing|dream|dreaming) about (?:hurting|killing|harming)\b"
     r"|\b(?:picture|picturing|imagine|imagining|fantasi[sz]e|fantasi[sz]ing|dream|dreaming|thinking) (?:about )?"
     r"(?:punching|hitting|hurting|killing|harming|stabbing|strangling|beating|shooting|attacking|choking) "
     rf"(?:people|someone|everyone|{_OBJ})\b"
     rf"|\b(?:make|making) {_OBJ} (?:pay|suffer|regret)\b(?! (?:me|us|the|rent|back|for (?:the|my|our|dinner|lunch))\b)"
     r"|\b(?:thoughts?|images?|urges?|pictures?|visions?) (?:of|about) (?:hurting|harming|killing|drowning|smothering|shaking"
     r"|dropping|stabbing|suffocating|throwing) (?:my |the |our )?(?:baby|newborn|infant|child|kids?|son|daughter|toddler)\b"
     r"|\bhomicidal (?:ideation|thoughts|urges)\b"
     rf"|\b(?:plans?|planning|going|gonna|wants?|intends?) to (?:confront|get back at|deal with|get even with|go after|settle (?:things|it)"
     rf" with) {_OBJ}|\bintrusive (?:thoughts|images) (?:about|of) (?:pushing|hurting|stabbing|killing|harming)\b"),
    ("en.lying_in_wait", "harm_others", ("harm_to_others",), "urgent",  # a weapon and waiting for someone, either order
     r"\b(?:got|have|brought|with|holding) (?:a |my |the )?(?:baseball bat|bat|crowbar|hammer|machete|axe|knife|gun)\b"
     r"[^.!?]{0,60}?\bwaiting (?:for (?:him|her|them) )?(?:outside|at|by|near)\b"
     r"|\bwaiting (?:for (?:him|her|them) )?(?:outside|at|by|near)\b[^.!?]{0,60}?\b(?:with|holding|got|have) (?:a |my |the )?"
     r"(?:baseball bat|bat|crowbar|hammer|machete|axe|knife|gun)\b"
     r"|\b(?:bring|bringing|take|taking|brought|took) (?:a|my|the|his|my dad's) (?:gun|rifle|pistol|knife|weapon) to (?:school|class"
     r"|work|the office|his (?:house|place|work)|her (?:house|place|work)|their (?:house|place))\b"),
    # --- abuse against the speaker; IPV lethality markers (Danger Assessment) -------------------------
    ("en.abuse_now", "ipv_lethality", ("abuse",), "urgent",
     r"\b(?:said|says|threatened|threatens|told me|keeps saying|swore|swears|screaming|screamed|screams|yelling|yelled"
     r"|shouting|shouted)(?: \w+){0,7}? (?:he|she|they)(?:'ll| will| is going to|'s going to| would|'d) "
     r"(?:kill|murder|strangle|shoot|stab) me\b|\b(?:he|she|they)(?:'ll| will| is going to|'s going to| would|'d) "
     r"(?:break my neck|slit my throat|bury me)\b"
     r"|\b(?:said|says|threatened|threatens|told me|keeps saying) (?:that )?(?:he|she|they)(?:'ll| will| is going to| would)? "
     r"(?:kill|murder) me\b|\bscared for my life\b|\bnobody will find my body\b|\bhitting me right now\b"
     r"|\b(?:gun|knife) to my (?:head|throat)\b|\bpull the trigger\b"
     r"|\bthreaten(?:s|ed|ing)? to (?:kill|stab|shoot|strangle|choke|murder|burn|drown) (?:me|us|the kids|the children|my)\b"
     r"|\b(?:if|when|once) i (?:ever )?(?:leave|left|go|tell|told|call|called|report|try to leave|go to the police|divorce)\b"
     r"[^.!?]{0,50}?\b(?:he|she|they)(?:'ll| will|'d| would|'s going to| is going to)? (?:kill|murder|find and kill|stab|shoot|end) me\b"
     r"|\b(?:next time|one day|someday) (?:he|she|they)(?:'ll| will| is going to|'s going to) (?:[\w'-]+ ){0,2}?(?:kill me|finish"
     r" (?:the job|me off|me)|not stop)\b"
     r"|\bi(?:'ll| will|'d| would)? never (?:leave|get out of (?:here|this house|this marriage|the house)|get out|make it out|escape)"
     r" (?:[\w'-]+ ){0,2}?alive\b"
     r"|\bif (?:he|she|they) can't have me,? (?:no one|nobody|no-one) (?:can|will)\b"
     r"|\b(?:afraid|scared|terrified|convinced|worried) (?:that )?(?:he|she|they)(?:'ll| will|'s going to| is going to| might| could"
     r"| would) (?:actually |really |one day )?(?:kill|murder) me\b"
     r"|\b(?:threatened|threatens|threatening|said|says|swore|swears|promised) (?:[\w'-]+ ){0,3}?(?:to do it again|(?:he|she|they)"
     r"(?:'ll| will) do (?:it|that) again)\b"),
    ("en.strangled", "ipv_lethality", ("abuse",), "urgent",
     r"\b(?:choked|chokes|choking|strangled|strangles|strangling|throttled|throttles) me\b"
     r"|\b(?:his|her|their|both) hands? (?:were |was |are |is )?(?:around|round|on|at) my (?:neck|throat)\b"
     r"|\b(?:grabbed|squeezed|held|pinned|gripped|grabs|squeezes|holds|pins) (?:me )?(?:by )?(?:my|the) (?:neck|throat)\b"
     r"|\b(?:put|puts|wrapped|wraps) (?:his|her|their|both) hands? (?:around|round|on) my (?:neck|throat)\b"),
    ("en.weapon", "ipv_lethality", ("abuse",), "urgent",
     r"\b(?:threatened|threatens|threatening|came at|comes at|went for|goes for|chased|chases) (?:me|us) with (?:a|the|his|her|their"
     r"|my) (?:knife|gun|pistol|rifle|shotgun|machete|axe|hammer|bat|blade|scissors)\b"
     r"|\b(?:pointed|points|pointing|held|holds|holding|pressed|put|puts) (?:a|the|his|her|their) (?:gun|knife|blade|pistol|rifle)"
     r" (?:at|to|against) (?:me|my (?:head|throat|neck|chest|face|stomach))\b|\bshowed me (?:the|his|her|a) (?:gun|knife)\b"
     r"|\b(?:keeps?|kept|has|got|bought|sleeps with|hides?|carries) (?:a |the |his |her |their )?(?:loaded )?(?:gun|pistol|rifle"
     r"|shotgun|firearm|knife|knives|machete|axe)\b(?=[^.!?]{0,80}?\b(?:says?|said|threaten\w*|told me|swears?|keeps saying"
     r"|kill me|use it|on me|if i|remind\w*|whenever we (?:argue|fight)|when (?:he|she|they)(?:'s| is| are|'re) (?:angry|drunk|mad))\b)"),
    ("en.ipv_escalation", "ipv_lethality", ("abuse",), "urgent",
     r"\b(?:beatings?|violence|abuse|hitting|attacks?|assaults?) (?:are|is|have been|has been|keeps?) (?:happening |getting |coming )?"
     r"(?:more often|more frequent|worse|more violent|every (?:day|night|week))\b"),
    ("en.perpetrator", "ipv_lethality", ("harm_to_others",), "urgent",
     r"\bi (?:[\w'-]+ )?(?:choked|strangled|throttled) (?:her|him|them|my \w+)\b"
     r"|\bi (?:[\w'-]+ )?(?:grabbed|held|pinned|squeezed) (?:her|him|them|my \w+) (?:by|around|round) (?:the|her|his|their) "
     r"(?:throat|neck)\b|\bi put my hands (?:around|round|on) (?:her|his|their|my \w+'s) (?:neck|throat)\b"),
    ("en.abuse", "abuse", ("abuse",), "concern",
     r"(?<!it )(?<!this )(?<!that )(?<!what )\b(?:hits?|hitting|beats?|beating|beat me up|slapped|slaps|pushes|pushed|kicks?|kicked|punched"
     r"|abused|molested|raped) me\b|\blocks? me in\b|\bthreatens? to (?:hurt|beat|hit) me\b|\bsexually abused\b"
     r"|\bthrows? (?:things|stuff|\w+) at me\b"
     r"|\b(?:grabs?|grabbed|shoves?|shoved|pins?|pinned|spits? on|spat on|bites|bit) me\b(?! (?:a|an|some|one|two|"
     r"coffee|lunch|food|drinks?|the|out|up|too|as)\b)|\bshoves? me around\b"
     r"|\b(?:grabs|pulls|yanks|twists) (?:me by )?my (?:wrists?|arms?|hair)\b"
     r"|\b(?:grabbed|pulled|yanked|twisted|dragged) me by (?:my|the) (?:wrists?|arms?|hair)\b"
     r"|\blocks? me out\b|\bkicked me out of the house\b"
     r"|\b(?:calls?|calling|called) me (?:a |an )?(?:worthless|useless|a waste|garbage|trash|a mistake|a failure|pathetic"
     r"|disgusting|whore|slut|piece of \w+)"
     r"|\b(?:gropes|groped|fondles|fondled|molests) me\b|\b(?:touches|touched|touching) (?:me|my (?:body|chest|breasts|private"
     r"|legs?|thighs?|butt))\b(?= (?:\S+ ){0,8}?(?:secret|inappropriately|down there|without|under my|not to tell|when no one))"),
    ("en.abuse_3p", "abuse", ("abuse",), "concern", r"\b(?:hits|beats|abuses|hurts) (?:her|him|them)\b"),
    # --- acute medical danger; an overdose taken ------------------------------------------------------
    ("en.overdose", "attempt", ("suicide", "medical"), "urgent",
     r"\b(?:i|i've|i have) (?:just )?(?:overdosed|od'?e?d)\b|\boverdosed on\b|\b(?:just )?(?:took|swallowed|taken) (?:all|a whole bottle|the whole bottle"
     r"|a handful|\d{2,}|twenty|thirty|forty|fifty) (?:of )?(?:my |the |those )?(?:\w+ )?(?:pills|tablets)\b"
     rf"|\b(?:just )?(?:took|swallowed|taken|downed|necked|popped) (?:\d{{2,}}|twenty|thirty|forty|fifty|sixty)(?:[- ]\w+)? (?:of )?(?:my |the )?{_DRUG}\b"
     rf"|\b(?:took|swallowed|downed|taken) (?:the |a |my )?(?:whole|entire) (?:packet|pack|box|bottle|strip|sheet) of (?:my )?(?:{_W}){{0,2}}?{_DRUG}\b"
     rf"|\b(?:took|swallowed|taken|downed) (?:all|the whole|a whole|an entire|the entire|half(?: a| the)?) (?:bottle|box|pack|packet|strip|jar"
     rf"|sheet|blister pack)s? of (?:my |the |those )?(?:\w+ )?(?:{_DRUG}|\w+)\b(?<!wine)(?<!beer)(?<!vodka)(?<!water)"
     rf"|\b(?:took|swallowed|taken) (?:all|all of) (?:my|the|those) {_DRUG}\b(?! (?:away|from|off|out|back|with|to)\b)"
     r"|\b(?:drank|swallowed|drunk|drinking) (?:a bottle of |some |the |half a bottle of |a cup of )?(?:bleach|poison|antifreeze"
     r"|weed ?killer|pesticide|paraquat|rat poison|drain cleaner)\b"
     rf"|\b(?:took|swallowed|taken|downed|necked|popped) (?:about|around|like|over|nearly|maybe|at least) (?:\d{{2,}}|twenty|thirty|forty"
     rf"|fifty|sixty|a hundred)(?:[- ]\w+)? (?:of )?(?:my |the |those )?(?:{_W}){{0,2}}?{_DRUG}\b"
     rf"|\b(?:took|swallowed|taken|downed|necked|popped) (?:a lot of|lots of|loads of|a bunch of|handfuls of|a fistful of|the rest of)"
     rf" (?:my |the |those )?(?:{_W}){{0,2}}?{_DRUG}\b"
     r"|\b(?:took|swallowed|downed|taken) (?:everything|every pill|all the pills|all the meds|whatever (?:i could find|was))"
     r" (?:in|from) the (?:bathroom |medicine |kitchen )?(?:cabinet|drawer|cupboard|box)\b"),
    ("en.medical", "medical_danger", ("medical",), "urgent",
     r"\bcan't breathe\b|\bchest (?:feels|pain|hurts)\b|\bbleeding (?:won't|will not|doesn't) stop\b|\bwon't stop bleeding\b"
     r"|\bbleeding a lot\b|\bhaving a seizure\b|\b(?:won't|can't) wake (?:her|him) up\b|\bunconscious\b|\bcut too deep\b"
     r"|\b(?:lips|face|skin|fingers) (?:are |is )?(?:turning|going|gone|went) (?:blue|purple|grey|gray)\b"
     r"|\bcan't (?:catch|get) my breath\b|\b(?:isn't|is not|stopped|wasn't|not) breathing\b|\bunresponsive\b"
     r"|\b(?:she|he|they|my \w+)(?:'s| is| was| are|'re)? (?:not|isn't|wasn't|aren't) (?:responding|waking up)\b(?! to (?:my|me|messages|texts|calls|emails))"
     r"|\b(?:collapsed|passed out|fainted) and (?:isn't|is not|won't|can't|doesn't)\b|\b(?:vomiting|throwing up|coughing up) blood\b"
     r"|\b(?:throat|tongue) (?:is )?(?:swelling|closing)\b|\b(?:blood|bleeding) (?:everywhere|all over)\b|\bso much blood\b"
     r"|\bcan't stay awake\b(?=[^.!?]{0,60}?(?:pills|took|tablets|meds))|\bbleeding (?:heavily|badly|so much|through)\b"
     r"|\bheavy bleeding\b|\b(?:feeling|feel|going to|about to) (?:faint|pass out)\b(?=[^.!?]{0,40}(?:blood|bleed|pills|took))"
     r"|\bbleeding\b[^.!?]{0,40}\b(?:feeling|feel|i'm) (?:faint|dizzy)\b"
     r"|\b(?:she's|he's|they're|she is|he is|they are|she isn't|he isn't) not (?:waking up|breathing|responding)\b|\b(?:she|he|they) (?:isn't|is not|won't|wont) wake up\b"
     r"|\b(?:can't|cannot|couldn't) wake (?:her|him|them|my \w+) up\b|\b(?:it|the cut|the wound) (?:still )?(?:won't|doesn't|will not) (?:close|stop bleeding)\b"),
]

_ZC = r"[^,.!?;:。、\s]"  # a Chinese character that does not end a clause (，！？ are ,!? after NFKC)
_ZH_SITE = r"(?:天台|楼顶|屋顶|顶楼|窗台|阳台|栏杆|护栏|大桥|桥上|桥边|桥|江边|河边|海边|湖边|悬崖|崖边|铁轨|站台边)"
_ZH_DRUG = r"(?:安眠药|药片|药丸|药|百草枯|农药|老鼠药|止痛药|抗抑郁药|褪黑素)"
_ZH_RULES: list[tuple[str, str, tuple[str, ...], str, str]] = [
    # --- suicide: active ideation, intent ---------------------------------------------------------
    ("zh.want_die", "active_ideation", ("suicide",), "urgent",
     r"想死|去死|不想活|活不下去|想轻生|准备自杀|想要?自杀|要自杀|想紫砂|紫砂|zisha|寻死"),
    ("zh.end_life", "active_ideation", ("suicide",), "urgent", r"结束(?:自己的)?生命|结束自己|结束这一切|结束一切|一了百了|了结自己"),
    ("zh.decided", "intent", ("suicide",), "urgent",
     rf"(?:已经|我)?(?:决定|下定决心|想清楚)了?{_ZC}{{0,4}}(?:去死|死|结束|离开这个世界|走了|了断)"),
    ("zh.suicide", "active_ideation", ("suicide",), "concern", r"自杀|轻生|寻短见|做傻事|自杀意念|自杀想法"),
    # --- suicide: method ------------------------------------------------------------------------------
    ("zh.method", "method", ("suicide",), "urgent",
     r"(?:想|要|就|去|准备|打算|会)\S{0,4}(?:跳楼|跳河|跳江|跳海|跳桥|上吊|卧轨)|从\S{0,4}(?:楼|桥|天台|楼顶)上?跳下去"
     r"|(?:想|要|准备|马上就?|就)跳下去|割腕|煤气打开|开着煤气|打开煤气"),
    ("zh.plan_when", "plan", ("suicide",), "urgent",  # "while the roommate is out": a time chosen for the act
     r"趁\S{0,8}(?:不在|没人|睡着|出门)\S{0,8}(?:吃药|吞药|跳|动手|割|烧炭)"),
    ("zh.charcoal", "method", ("suicide",), "concern", r"烧炭|(?:买|准备)\S{0,2}(?:木炭|炭)"),
    # --- suicide: preparatory behaviour -----------------------------------------------------------------
    ("zh.stockpile", "preparatory", ("suicide",), "urgent",
     rf"(?:安眠药|药片?)\S{{0,6}}(?:攒够|存够|攒了|囤了|全吃|全部吃)"
     rf"|{_ZH_DRUG}{_ZC}{{0,8}}(?:攒|囤|藏|存)(?:了|下|起来|着|够)|{_ZH_DRUG}{_ZC}{{0,6}}留(?:了)?下来"
     rf"|(?:攒|囤|存|偷偷藏|偷偷留)(?:了|下|着)?{_ZC}{{0,6}}(?:安眠药|药片|一瓶药|一盒药|一小瓶|止痛药)"),
    ("zh.research", "preparatory", ("suicide",), "urgent",
     rf"吃多少{_ZC}{{0,3}}(?:会|能|才|可以)?{_ZC}{{0,4}}(?:死|救不回来|不会被救|醒不过来|没命)|致死量|致死剂量|怎么死(?:最|才|不)|死法"
     rf"|(?:查|搜|搜索|研究|百度|上网查|打听)(?:了|过)?{_ZC}{{0,6}}(?:多少片|多少颗|多少粒|怎么死|怎样死|哪种死法|自杀方法|不会被救"
     rf"|救不回来|多高(?:才|能|会)|几楼(?:才|能|会)|最高)|(?:查|搜)\S{{0,4}}(?:哪|什么)\S{{0,3}}(?:桥|楼|大厦|天台)\S{{0,3}}(?:最高|够高)"
     rf"|想好了?怎么死"),
    ("zh.note", "preparatory", ("suicide",), "urgent",
     r"遗书|遗言|后事\S{0,3}安排好|最后一次\S{0,4}(?:说话|聊天)"
     rf"|给(?:爸|妈|父母|家人|孩子|老公|老婆|女儿|儿子|每个人|大家|所有人){_ZC}{{0,8}}的?信{_ZC}{{0,3}}(?:都|已经)?写好"
     rf"|(?:告别|道别|诀别)的?(?:信|视频|留言|消息|短信)"),
    ("zh.farewell", "preparatory", ("suicide",), "urgent",
     r"东西都送人|把东西送人|和\S{0,4}告别了|跟\S{0,4}告别了|不会再拖累|看到这条消息的时候\S{0,6}不在了|再也不用痛苦"
     r"|托付给|该交代的都交代|都交代好了|(?:把)?(?:存款|积蓄|工资卡|所有的钱)\S{0,4}(?:都)?(?:转给|留给)"),
    # --- suicide: attempt in progress or just made -------------------------------------------------------
    ("zh.at_height", "attempt", ("suicide",), "urgent",
     r"(?:站|坐)在\S{0,6}(?:天台|楼顶|屋顶|桥|窗台|栏杆|护栏)的?(?:边上|边缘|外面|外边|外侧|外)|(?:站|坐)在(?:栏杆|窗户|窗台)外|(?:站|坐|躺)在铁轨上"
     rf"|(?:站|坐|蹲|躺|趴|爬)(?:在|到|上)了?{_ZC}{{0,8}}{_ZH_SITE}(?:上|边|的?边上|边缘|外面|外侧)?(?=(?:[^。!?]{{0,14}}"
     rf"(?:不想(?:再)?(?:回头|回去|回\S{{0,2}}|下来|下去|上来|活)|腿(?:已经)?(?:悬|伸|挂|跨)|往下看|好高|风好大|最后一次|再见))|{_ZC}{{0,3}}(?:了)?[,.]?现在)"
     rf"|(?:我)?现在(?:正)?(?:站|坐|在){_ZC}{{0,6}}{_ZH_SITE}"
     r"|腿(?:已经)?(?:悬|伸|挂|跨)(?:在|到|出)\S{0,3}(?:外面|外边|外头|栏杆外|窗外)"),
    ("zh.attempt_act", "attempt", ("suicide",), "urgent",
     r"炭(?:已经)?(?:点|烧)(?:上|着|起来)了|(?:已经)?(?:点|烧)(?:上|着)了?炭|煤气(?:已经)?(?:开|打开)(?:了|着)"
     rf"|(?:绳子|绳|皮带|围巾)(?:已经)?(?:套|挂|系|绑)(?:在|上|到)(?:了)?{_ZC}{{0,2}}(?:脖子|房梁|门框|吊扇|窗框)"
     r"|(?:门窗|窗户|门缝)(?:都)?(?:封|堵|关)(?:好|死|上|严)了?(?=[^。!?]{0,20}(?:炭|煤气))"
     r"|(?:炭|煤气)[^。!?]{0,20}(?:门窗|窗户|门缝)(?:都)?(?:封|堵|关)(?:好|死|上|严)"
     r"|(?:已经|刚才|刚刚)(?:割|划)了?(?:腕|手腕|动脉)"
     r"|(?:昨天|昨晚|前天|上周|这周|刚才|刚刚|几天前|最近|上个月)\S{0,6}(?:自杀未遂|自杀过|吃药自杀|割腕|上吊|跳楼)"),
    ("zh.overdose", "attempt", ("suicide", "medical"), "urgent",
     r"(?:吃|吞|服)了?\S{0,2}(?:一整|整|一)(?:瓶|盒)|(?:吃|吞|服)了\S{0,2}(?:\d{2,}|[一二三四五六七八九]?十[一二三四五六七八九]?多?|几十|一大?把)"
     r"(?:片|颗|粒)|吃了很多药|(?:喝|吃)了\S{0,2}(?:农药|百草枯|敌敌畏|老鼠药|消毒水|漂白)"
     rf"|(?:一整|整|一|半|两|几|所有的?|全部的?)(?:瓶|盒|板|袋|排|把){_ZC}{{0,4}}药{_ZC}{{0,3}}(?:都|全)?(?:吞|吃|喝|服)(?:了|下去|掉|光)"
     rf"|(?:所有|全部)的?{_ZC}{{0,2}}药{_ZC}{{0,3}}(?:都|全)?(?:吞|吃|喝)(?:了|下去|掉|光)"
     rf"|(?:能找到|找得到|所有|全部|剩下|家里|手头)的?{_ZC}{{0,4}}药{_ZC}{{0,2}}(?:都|全)(?:吃|吞|喝)(?:了|下去|掉|光)"),
    ("zh.attempted", "attempt", ("suicide",), "concern", r"自杀未遂|吞过?药|洗胃|吃过\S{0,2}(?:一次|几次)?药(?=[^。!?]{0,20}(?:念头|想死|自杀|救))"),
    # --- suicide: aborted or interrupted attempt ----------------------------------------------------------
    ("zh.aborted", "aborted_attempt", ("suicide",), "urgent",
     rf"差(?:一)?点(?:儿)?(?:就)?{_ZC}{{0,6}}(?:跳(?!起来|舞|绳|槽|楼机)|吃药|吞药|吞了|割腕|割下去|上吊|动手|自杀|寻死|结束自己|结束生命)"
     rf"|(?:本来|正准备|已经准备|刚要|正要|都准备)(?:要)?{_ZC}{{0,8}}(?:跳|吃药|吞药|割腕|上吊|动手|自杀|结束自己)"
     r"(?=[^。!?]{0,20}(?:但|可|结果|被|却|突然|才))"
     rf"|(?:站|坐|爬|走)(?:到|在|上)了?{_ZC}{{0,6}}{_ZH_SITE}(?:上|边)?了?[^。!?]{{0,16}}(?:最后|后来|又|还是){_ZC}{{0,4}}"
     r"(?:下来|回来|回去|回家|爬回|退回|离开|拉回)"
     rf"|{_ZH_SITE}{_ZC}{{0,4}}(?:站|坐|待|蹲)了(?:很久|好久|半天|一会儿?|一整?夜|一晚上|几个小时|一个多?小时)"
     rf"|(?:药|安眠药|药片)(?:都)?(?:倒|拿|握|放|攥|捧)在(?:了)?手(?:心|里|上)(?=[^。!?]{{0,20}}(?:停|没吃|放回|放下|扔|才|被|但|可是|结果))"
     rf"|(?:绳子|绳|药|刀|炭|窗台|天台|楼顶|桥|栏杆|阳台)[^。!?]{{0,20}}被{_ZC}{{0,4}}(?:撞见|发现|拦|拉|救|劝)(?:住|下来|了下来|回来|回|下)"
     r"|最后(?:还是)?没(?:敢|跳|下去|动手|死成)|绳子断了|没死成"
     rf"|(?:绳子|绳|药|刀|炭){_ZC}{{0,6}}(?:挂|系|拿|准备|倒|点)(?:好|上)?了?[,，]?(?:在)?最后(?:一刻|关头|一秒)"
     rf"|(?:药|药片|安眠药)(?:都)?(?:放|含|倒|塞)(?:在|进)(?:了)?嘴里[^。!?]{{0,8}}(?:吐|吐了|吐出)"
     rf"|(?:跳楼|跳河|跳桥|跳下去|上吊|割腕|吃药|想死|自杀)[^。!?]{{0,12}}被{_ZC}{{0,4}}(?:拉|拦|救|劝|抢|拽)(?:了)?(?:下来|回来|回|住|下)"),
    # --- suicide: wish to be dead, passive; hopelessness and burden ------------------------------------------
    ("zh.passive", "wish_dead", ("suicide",), "concern",
     r"活着\S{0,2}(?:没意思|没有意思|没意义|好累|太累|真累)|不想再醒|不要醒过来|再也不要?醒|消失了?就好|想消失|不想再存在"
     r"|没有我\S{0,8}(?:更好|会好|更开心|更轻松)|死(?:了|掉)(?:也|就)好|死了就不用|想到死|想过死|没有出生|没出生|活够了"
     r"|不在了\S{0,6}(?:不会有人|没人)|为什么还活着|活着(?:有|还有)什么(?:意思|意义|用)|活着干什么"
     rf"|(?:睡|一觉)(?:着|下去)?(?:了)?(?:后|以后|之后)?(?:就)?(?:再也)?(?:不要|不想|别|不用|永远不)(?:再)?醒|不(?:要|想)醒来|一睡不醒|一觉不醒|永远睡下去|长眠不醒"
     rf"|(?:如果|要是|假如)我{_ZC}{{0,4}}(?:消失|不在|死)了?[^。!]{{0,10}}(?:会不会|有没有|会有)\S{{0,4}}(?:人|谁)\S{{0,4}}"
     r"(?:发现|注意|在乎|难过|想我|记得|知道)"
     rf"|(?:没有人|没人|谁都不会|不会有人){_ZC}{{0,4}}(?:发现|注意到|在乎|在意|想念|记得)我?{_ZC}{{0,4}}(?:不在|消失|死)"
     rf"|我{_ZC}{{0,3}}(?:消失|不在|死)了[^。!]{{0,8}}(?:会不会|有没有|会有|会)\S{{0,3}}(?:人|谁)\S{{0,4}}(?:发现|注意|在乎|难过|想我|记得|知道)"
     rf"|(?:希望|巴不得|要是能|真想|最好)\S{{0,6}}(?:出个?意外|被车撞|生场大病|得绝症|就这么死|死掉|消失掉)"
     rf"|(?:被车撞|出车祸|出意外|生病死)(?:死)?了?{_ZC}{{0,3}}(?:也挺好|也好|就好了|也不错|倒好|算了)"
     rf"|(?:想|希望|好想|只想)(?:让)?{_ZC}{{0,4}}(?:一切|所有|这一切|所有的事|痛苦)\S{{0,2}}(?:都)?(?:停下来|停止|结束|消失|快点结束)"
     r"|(?:不在|离开)这个世界(?:上)?\S{0,4}(?:也没什么|也好|更好|算了)|不想(?:再)?(?:存在|醒过来|活在这个世界)"
     r"|(?:死|离开这个世界)\S{0,4}(?:是|也是)\S{0,2}(?:一种)?解脱|不如死了|还不如死|死了算了|想(?:到|过)\S{0,4}(?:自己的)?葬礼"
     rf"|一直睡下去|睡下去就好|我死了{_ZC}{{0,6}}(?:也)?没(?:有)?人{_ZC}{{0,3}}(?:知道|发现|在乎|难过|在意)|明天不要(?:到来|来了?)"
     rf"|想{_ZC}{{0,4}}消失|消失{_ZC}{{0,2}}[,，]?(?:谁|没人)\S{{0,2}}(?:也)?找不到"
     rf"|(?:掉下来|出事|死了|没了|撞死|摔死){_ZC}{{0,3}}也(?:无所谓|没关系|挺好|好|不错)|被动(?:的)?(?:死亡|自杀)(?:意念|想法|念头)|死亡意念"),
    ("zh.hopeless", "hopelessness", ("suicide",), "concern",
     r"绝望|看不到\S{0,2}(?:希望|未来)|没有希望|(?:什么|一切|所有)都没有?意义|(?:撑|熬|坚持)不(?:下去|住)了|不想再撑|撑不下去"
     r"|是\S{0,4}累赘|多余的|拖累(?:所有人|大家|家人|别人|你们)|活着也没\S{0,2}用|没有出路|走投无路"
     r"|不会再好(?:起来)?了|好不起来了|这辈子(?:就)?(?:这样|完)了"),
    # --- self-harm (NSSI) and its escalation -----------------------------------------------------------
    ("zh.sh_intent", "nssi", ("self_harm",), "urgent", r"(?:想|要)\S{0,4}(?:伤害|划|割|烫)自己|(?:想|要)\S{0,2}(?:割|划)下去"),
    ("zh.sh", "nssi", ("self_harm",), "concern",
     r"自残|自伤|伤害自己|(?:划|割|烫|掐|抓|咬|扎|戳)(?:伤)?自己|(?:划|割)(?:了|过)?\S?(?:手臂|手腕|胳膊|腕|大腿)|烟头烫"
     r"|用头撞墙|惩罚自己|(?:掐|抓|咬|划|割|挠)(?:到|得|出)\S{0,2}(?:出血|流血)"
     r"|(?:腕|臂)上?\S{0,2}(?:割|划)(?:了|过|得|开)|(?:割|划)手"
     rf"|用(?:刀片|小刀|刀|剪刀|圆规|美工刀|打火机|烟头){_ZC}{{0,6}}(?:划|割|扎|烫)"),
    ("zh.sh_escalation", "nssi_escalation", ("self_harm",), "urgent",
     rf"越(?:割|划|烫|伤)越(?:深|多|狠|重)|(?:割|划|烫|伤)得?(?:比)?(?:以前|上次|平时|之前|原来)\S{{0,2}}(?:更|还)?(?:深|多|狠|重)"
     rf"|(?:割|划|烫)得?(?:越来越|一次比一次)(?:深|狠|重)|(?:划|割|伤口)[^。!?]{{0,8}}越来越(?:深|多|严重)"
     rf"|这次{_ZC}{{0,6}}(?:割|划|烫)?{_ZC}{{0,2}}(?:深|狠|彻底)一?(?:点|些)|(?:割|划)深一?(?:点|些)"
     rf"|(?:缝|要缝|得缝|去缝)了?{_ZC}{{0,2}}针|(?:看到|见到|露出)\S{{0,2}}(?:脂肪|骨头)"
     rf"|(?:自伤|自残|划|割)\S{{0,4}}(?:频率|次数)\S{{0,2}}(?:增加|变多|越来越)"
     rf"|(?:现在|如今)(?:要|得|需要){_ZC}{{0,2}}(?:划|割|烫){_ZC}{{0,4}}(?:才行|才够|才有感觉)|(?:划|割|烫){_ZC}{{0,6}}才(?:有感觉|够|行)"),
    ("zh.sh_tolerance", "nssi_escalation", ("self_harm",), "concern",
     r"(?:划|割|掐|烫|自伤|自残)\S{0,4}(?:已经)?(?:没感觉|不够|没用|不管用)了?"),
    # --- harm to others --------------------------------------------------------------------------------
    ("zh.harm_intent", "harm_others", ("harm_to_others",), "concern",
     r"(?:杀了|杀死|捅死|砍死|弄死|掐死|毒死)(?:他|她|他们|她们)|把\S{1,4}(?:杀了|杀死|掐死|弄死|捅死|砍死|摔死|闷死)"
     r"|伤害别人|伤害他人|伤害\S{0,3}(?:前任|家人|孩子)|拿刀\S{0,2}(?:去|找|砍|捅)|(?:揍|打)(?:他|她)一顿|报复(?:他|她|他们|她们|社会)"
     r"|把\S{1,10}(?:揍|暴打|痛打|打)一顿|让\S{1,12}付出代价|带(?:着)?(?:刀|枪|斧头|汽油)(?:去|到)"
     rf"|(?:把|将)(?:孩子|宝宝|婴儿|女儿|儿子){_ZC}{{0,4}}(?:摔|扔|丢|闷|掐|淹)(?:下去|死|到)"
     r"|(?:对付|收拾|教训|弄)(?:他|她|他们|她们)(?!一下)|把(?:他|她|他们)推(?:下楼|下去|到楼下)|想(?:掐|勒|砍|捅)(?:她|他)"),
    # --- abuse; IPV lethality markers ------------------------------------------------------------------------
    ("zh.abuse_now", "ipv_lethality", ("abuse",), "urgent",
     r"(?:说|威胁|扬言|喊着?|吼着?)\S{0,6}(?:杀了|杀死|弄死|打死|掐死|砍死|捅死|勒死|毒死|整死|搞死)我|正在打我|(?:他|她)现在拿着刀"
     r"|拿着?(?:菜刀|刀|枪|斧头|棍子)\S{0,4}(?:追|砍|对着|指着)我"
     rf"|(?:说|威胁|扬言)[^。!?]{{0,14}}(?:离婚|分手|离开我|报警|告诉别人|起诉)[^。!?]{{0,8}}(?:就|会){_ZC}{{0,8}}(?:杀了|弄死|打死|砍死|杀|用(?:刀|它|枪))"
     rf"|把(?:我|我们|我们全家|全家|我和孩子){_ZC}{{0,3}}(?:都)?(?:杀了|弄死|杀掉|砍死|烧死)"
     rf"|(?:下次|迟早|早晚|总有一天){_ZC}{{0,6}}(?:打死|弄死|杀了|要了)我|(?:要|会)带着(?:孩子|我们)一起死"
     rf"|怕(?:他|她)(?:会|真的会)?(?:把我)?(?:杀了|打死|弄死)|(?:扬言|威胁|说)(?:要)?(?:再来|再打|再掐|还要)"),
    ("zh.strangled", "ipv_lethality", ("abuse",), "urgent",
     rf"(?:掐|勒|卡|扼)(?:住|着|过|了)?(?:我|我的)(?:的)?(?:脖子|喉咙|颈部|颈)|掐我脖子|(?:勒|掐)得?我{_ZC}{{0,4}}(?:喘不过气|不能呼吸|没法呼吸|窒息|晕)"
     rf"|(?:拿|用)(?:刀|枪|菜刀|剪刀)\S{{0,4}}(?:指着|抵着|架在|对着|顶着)(?:我|我的)"
     rf"|把(?:菜刀|刀|枪|剪刀|水果刀){_ZC}{{0,2}}(?:架|抵|顶|指|按)(?:在|着)(?:我|我的)"
     rf"|(?:枕头下|床边|床头|床头柜|身上|包里|车里){_ZC}{{0,4}}(?:藏|放|带)(?:着|了)?{_ZC}{{0,3}}(?:刀|枪)(?=[^。!?]{{0,20}}(?:说|威胁|敢|离婚|杀|用))"
     rf"|(?:打|揍)(?:得|我)?{_ZC}{{0,4}}(?:一次比一次|越来越)(?:狠|重|凶|频繁)"),
    ("zh.ipv_escalation", "ipv_lethality", ("abuse",), "urgent",
     rf"(?:家暴|打我|暴力|挨打){_ZC}{{0,4}}(?:越来越|一次比一次)(?:频繁|狠|重|严重|多)"),
    ("zh.perpetrator", "ipv_lethality", ("harm_to_others",), "urgent",
     r"我(?:掐|勒)(?:了|过|住)?(?:她|他|老婆|老公|妻子|丈夫|女朋友|男朋友)(?:的)?(?:脖子|喉咙)|怕我会(?:把(?:她|他)|真的)\S{0,4}(?:打死|掐死|杀了)"),
    ("zh.abuse", "abuse", ("abuse",), "concern",
     r"(?:打|揍|抽|踢|掐|砸)我|家暴|虐待|性侵|猥亵|强奸|打断我的腿|打骂|把我关(?:在|起来)|把我锁在"
     r"|推了?我\S{0,4}(?:撞|摔|倒|到墙|下楼)|把我推(?:倒|到|下)|扇了?我(?!的)"
     r"|(?:骂|说)我\S{0,2}(?:是)?(?:废物|垃圾|贱人|贱货|白眼狼|去死|没用|蠢货|猪|丢人|不要脸|扫把星)"
     r"|后悔生(?:了|下)?我|不该生(?:下)?我|推过我"),
    ("zh.abuse_3p", "abuse", ("abuse",), "concern", r"(?:老公|丈夫|男朋友|爸|妈|父亲|母亲)\S{0,4}打(?:她|他|他们)"),
    # --- acute medical danger -----------------------------------------------------------------------------
    ("zh.medical", "medical_danger", ("medical",), "urgent",
     r"喘不上气|喘不过气|呼吸困难|胸口\S{0,2}(?:痛|疼)|胸口很(?:痛|疼)|血\S{0,2}止不住|流了很多血|叫不醒|昏迷|抽搐"
     r"|血[^。!?]{0,8}(?:止不住|停不下来|一直(?:在)?流|不停地?(?:流|往外)|流个不停)|出冷汗"
     r"|嘴唇发紫|脸(?:色)?发紫|晕(?:过去|倒)了|昏过去|没有(?:了)?呼吸|(?:叫|喊)\S{0,3}(?:也)?没(?:有)?反应|吐血|呕血|大出血|血流不止"
     r"|喉咙(?:肿|发紧)|意识不清|神志不清"),
]

# Idioms, jokes and topic talk: a rule never fires inside these spans.
_MASKS = [
    r"\b(?:training|workshop|seminar|course|class|lecture|talk|webinar|module)s? (?:at (?:work|school|uni) )?(?:on|about) "
    r"(?:\w+ ){0,2}suicid(?:e|al)\b|\bsuicide (?:warning signs|first aid|statistics|crisis lines?)\b",
    r"\b(?:kill|killing|killed) (?:time|it)\b|\bkill(?:ing)? for\b|\b(?:is|are|was) killing me\b|\byou're killing me\b",
    r"\bdying (?:to|for)\b|\bdie (?:of|from) (?:boredom|embarrassment|laughter)\b|\bdied laughing\b|\bbored to death\b",
    r"\bdeath of me\b|\bi'd die for\b|\bcould (?:die|murder)\b|\brather die than\b|\bdead tired\b",
    r"\bsuicide (?:prevention|risk|awareness|hotline|rates?)\b|\boverdose prevention\b"
    r"|\b(?:documentary|book|article|lecture|class|course|film|movie|podcast|paper|thesis|essay|study|research|report)s?"
    r" (?:\w+ ){0,3}(?:about|on) (?:\w+ )?(?:suicides?|self-harm|self harm|overdoses?)\b",
    r"想死(?:你|您|你们|他|她)了|自杀(?:预防|干预|风险|热线|率|预警|征兆|信号|新闻|案例|报道|话题|防治)|关于\S{0,8}(?:自杀|自伤|自残)"
    r"|有人跳楼|跳楼机|跳楼价|跳楼大?甩卖",
    # a class, a book, the news about it; the span stops at a clause mark or 我 ("新闻，我也想自杀" is not topic talk)
    r"(?:课|讲座|培训|文章|书|新闻|电影|纪录片|报道|论文|研究|视频)[^，。！？,.!?\s我]{0,10}(?:自杀|自伤|自残)",
    # charcoal and rope for a barbecue or camping (the span may cross a comma, so it is kept short: 12 characters)
    r"(?:烧烤|烤肉|烤串|bbq|火锅|取暖|露营|野营|野炊)[^。！？.!?\n]{0,12}?(?:买|准备)\S{0,2}(?:木?炭|绳子)|(?:买|准备)\S{0,2}(?:木?炭|绳子)"
    r"[^。！？.!?\n]{0,12}?(?:烧烤|烤肉|烤串|bbq|火锅|取暖|露营|野营|野炊)",
    r"\b(?:disappear|vanish) (?:into|to|off to|on) (?:a |an |the )?(?:\w+ )?(?:cabin|beach|island|holiday|vacation|trip|mountains?"
    r"|woods|forest|countryside|retreat)\b",
    # Chinese hyperbole: 饿得想死, 累得要死, 吓得半死 (an intensifier, like 累死)
    r"(?:饿|累|困|热|冷|烦|疼|痛|忙|丑|尴尬|无聊|气|急|吓|羡慕|馋|挤|晒|渴|撑)得?(?:我)?(?:要|快|想)?(?:死|半死)"
    r"|(?:加班|上班|学习|写作业|考试|复习|排队|堵车|开会|赶工|赶作业)\S{0,4}到(?:想死|要死|快死)",
    # hyperbole about sleep and tiredness
    r"\b(?:tired|exhausted|sleepy) i could sleep (?:forever|for a week|for days)\b",
]

# Context cues.  Negation is checked in the clause just before a match; the others in the sentence.
_NEG_WORD_EN = (r"\b(?:not|never|don't|do not|doesn't|didn't|won't|wouldn't|isn't|aren't|haven't|hasn't|no(?! one)|nothing"
                r"|den(?:y|ies|ied|ying))\b")
_NEG_EN = re.compile(_NEG_WORD_EN + r"(?:\W+\w+){0,5}\W*$", re.ASCII)
# "if I don't I'll probably kill myself": a new "I will" after the negation starts a new statement.
_NEG_EN_ENDS = re.compile(_NEG_WORD_EN + r"(?=(?:(?!" + _NEG_WORD_EN + r").)*\bi(?:'ll| will|'m going to|'m gonna)\b)", re.ASCII)
# ... but only inside a condition ("if/unless/when I don't …"): in "I don't think I'll kill myself" the
# negation governs the statement, and "think" makes it a hedged denial (concern, never none).
_COND_EN = re.compile(r"\b(?:if|unless|when|once)\b", re.ASCII)
_HEDGE_EN = re.compile(r"\b(?:think|sure|know (?:if|whether)|expect|promise)\b", re.ASCII)
_NEG_ZH = re.compile(r"(?:没有?|不|从没有?|从来没有?|从不|不会|并没有?|并不|绝不|决不|否认|无)"
                     r"(?:再|真的|会|想|想过|有|有过|打算|要|被|是|计划|存在|任何|明显|自伤|自残|自杀|轻生|伤人|及|和|或|、|,)*$")
# "suicide has never crossed my mind": the negation follows the match.
_NEG_AFTER = re.compile(r"\W*(?:has|have|had) never (?:crossed|entered|been on) my mind|\W*从来?没(?:有)?想过"
                        r"|\W+(?:and |but )?i (?:\w+ )?(?:said|answered|told (?:her|him|them)) no\b|[,，]?我(?:说|回答)(?:没有|不是|没|不会)",
                        re.ASCII)
_PAST = re.compile(
    r"\b(?:used to|last (?:year|month|summer|winter)|years? ago|months ago|when i was|in (?:college|high school|school)"
    r"|as a (?:teen|teenager|kid|child)|back then|survived|attempted|stopped|had (?:suicidal )?thoughts|when my \w+ died"
    r"|during my|last week|last time|when i was \d+)\b|\bat (?:age )?(?:1\d|[2-9]\d)\b(?! ?(?:am|pm|o'clock|:))"
    r"|\d+岁(?:的时候|那年)|(?<!比)以前|曾经|去年|前年|上周|上个月|(?<!比)上次|小时候|那时候|那段时间|初中|高中|在过去|过去的"
    r"|过去几|当年|后来|年前|被救", re.ASCII)
# For acts (preparation, an attempt, escalation, a lethality marker) only a distant past is history:
# an attempt last week is recent suicidal behaviour (the C-SSRS asks about the past three months).
_RECENT = re.compile(r"\blast (?:week|month|time|night)\b|\bstopped\b|\bsurvived\b|\battempted\b|\bhad (?:suicidal )?thoughts\b"
                     r"|上周|上个月|上次|被救|后来", re.ASCII)
_ACTS = {"preparatory", "attempt", "aborted_attempt", "nssi_escalation", "ipv_lethality", "medical_danger"}
# Recurring urges ("sometimes I want to hurt myself", 有时候) are not an intent for now; not
# applied to suicide, where "sometimes I think of jumping" still names a method.
_SOMETIMES = re.compile(r"\b(?:sometimes|at times|occasionally|some days)\b|有时候?|偶尔|时不时", re.ASCII)
_REPORT_EN = re.compile(
    r"\b(?:i|i'm|i've|i'll|i'd|me)\b|\b(?:he|she|they|he's|she's|they're|someone|somebody"
    r"|(?:my|his|her|our|a|the) (?:\w+ )?(?:friend|brother|sister|mom|mum|mother|dad|father|son|daughter|roommate|flatmate"
    r"|classmate|wife|husband|partner|boyfriend|girlfriend|colleague|client|patient|cousin|uncle|aunt|kid|child|character"
    r"|protagonist|heroine|hero|narrator|villain))\b", re.ASCII)
_REPORT_ZH = re.compile(
    r"我(?!妈|爸|朋友|同学|室友|舍友|儿子|女儿|弟弟|妹妹|哥哥|姐姐|老公|老婆|男朋友|女朋友|男友|女友|同事|们|家|母亲|父亲|丈夫|妻子"
    r"|表|堂|闺蜜|前夫|前妻|前任)"
    r"|他|她|有人|别人|女主|男主|主角|主人公|角色|(?<=我)(?:妈|爸|哥|姐|弟|妹)(?!的)"
    # a relative after 给/跟/和 is an object ("写给妈妈"), not the one speaking
    r"|(?<![给跟和对向陪找让])(?:朋友|同学|室友|妈妈|爸爸|儿子|女儿|弟弟|妹妹|哥哥|姐姐|老公|老婆|男朋友|女朋友|同事|孩子)(?!的|开的|给的|买的)")
# Fiction and media: what a character does is no one's crisis (a third party in a story → dropped).
_FICTION = re.compile(r"\b(?:novel|story|stories|book|script|screenplay|fanfic|fan fiction|character|protagonist|heroine"
                      r"|narrator|episode|the show|series|movie|film|play|poem|song|lyrics|act (?:one|two|three|\d))\b"
                      r"|小说|剧本|故事|角色|主角|主人公|女主|男主|电视剧|剧里|电影|游戏里|歌词|诗里", re.ASCII)
_NO_INTENT = re.compile(
    r"\b(?:don't have a plan|no plan|wouldn't act|won't act|not going to act|wouldn't do anything|i wouldn't|no (?:plan|intent)"
    r" or (?:plan|intent)|denies? (?:a |any )?(?:plan|intent))\b"
    r"|念头|不会去做|不会做什么|不会这么做|没有\S{0,4}计划|无具体计划|无计划|没有具体", re.ASCII)
# A reassurance: the writer says they are safe.  It lowers ideation to concern (never below), and never
# lowers an act.  Not a reassurance inside a doubt ("I don't know if I'm safe").
_REASSURE = re.compile(
    r"\b(?:don't|do not|dont) worry\b(?! about me\b)|\bi(?:'m| am) (?:fine|okay|ok|alright|safe|not in danger)\b(?!\?)"
    r"|\bi (?:won't|would never|wouldn't|will not|am not going to|'m not going to|'d never) (?:actually |really )?(?:do|act on|try)"
    r" (?:anything|it|that|something)\b|\b(?:it's|it is) (?:just|only) (?:a )?(?:thought|feeling|how i feel)\b"
    r"|\bi promise i (?:won't|will not|wouldn't)\b|\bi(?:'m| am) not (?:going to|gonna) (?:do|act)\b"
    r"|放心|别担心|不用担心|我不会(?:做傻事|干傻事|做什么|乱来|真的去做|去做|伤害自己|这么做|有事)|只是想想|只是说说|我没事|不会有事|我很安全"
    r"|不会付诸行动|不会真的", re.ASCII)
_NOW = re.compile(r"\b(?:now|these days|lately|nowadays|this (?:week|month))\b|现在|如今|最近|这几天|这周", re.ASCII)
# Not a reassurance inside a doubt, a pretence or a passing moment ("my fake 'I'm fine'", "one minute I'm okay").
_DOUBT = re.compile(r"\b(?:if|whether|not sure|don't know|unsure|fake|pretend\w*|act(?:ing)? like|thinks?|believes?|seems?"
                    r"|looks?|tell (?:everyone|people|them|him|her)|say(?:s|ing)?|one minute|some days|sometimes)\b|[\"“]"
                    r"|不知道|是否|不确定|假装|装作|以为|表面", re.ASCII)
_IDEATION = {"wish_dead", "active_ideation", "hopelessness", "method", "harm_others"}
# What a supporting construct can raise: ideation and self-harm; never a past attempt (concern = history).
_ESCALATES = _IDEATION | {"nssi", "nssi_escalation"}
_ASKED_EN = re.compile(r"\b(?:ask(?:s|ed|ing)?(?: me)?|wonder(?:s|ed|ing)?) (?:if|whether)\s*$", re.ASCII)
_LAUGH = re.compile(r"\b(?:lol|lmao|haha\w*|jk|just kidding)\b|哈哈|hhh|😂|🤣|233|开玩笑", re.ASCII)
# "我是认真的，不是开玩笑", "I'm not joking": the opposite of a joke.
_NOT_JOKING = re.compile(r"(?:不是|没有?在?|并不是|绝不是)(?:跟你|和你)?开玩笑|\bnot (?:joking|kidding|just kidding)\b|\bno joke\b",
                         re.ASCII)
_ACCIDENT = re.compile(r"\b(?:while|accidentally|by accident|chopping|shaving|on the stove|blister|nick)\b|不小心|切菜|剪头发", re.ASCII)
# An ordinary purpose makes a preparatory act ordinary ("gave away my clothes to make room", 搬家前送人).
_PURPOSE = re.compile(
    r"\b(?:to make (?:room|space)|make room|declutter\w*|(?:we're|i'm|we are|i am|since we're|since i'm) moving|moving (?:house|out"
    r"|to|abroad|flats?)|downsiz\w+|spring clean\w*|charity|donat\w+|garage sale|yard sale|car boot|outgr[eo]w\w*|don't fit"
    r"|doesn't fit|no longer fit|minimalis\w+|the move|new (?:baby|house|flat|apartment|place)|retir\w+|divorce|upgrad\w+)\b"
    r"|\bfor (?:when|if) (?:the |my |i )?(?:migraine|headache|pain|period|flare|cramps|back|get sick|need them)\b"
    r"|\bfor emergencies\b|\bfor (?:the |my )?(?:trip|travel|holiday)\b|\bin case i need (?:them|it)\b"
    r"|经常出差|怕买不到|备用|以防万一|搬家|断舍离|露营|野营|野炊|烧烤|钓鱼|\b(?:camping|fishing|climbing|sailing|barbecue|bbq)\b|腾(?:出)?(?:地方|空间|点地方)|捐(?:给|了|出)|二手|闲鱼|穿不下|不穿的|旧的?(?:衣服|家具|书)|整理房间", re.ASCII)

# Supporting constructs: a concern match nearby one of these becomes urgent (see _escalation).
_SUPPORT_MEANS = re.compile(
    r"\b(?:pills?|tablets|rope|noose|gun|razor|blade|knife|bleach|charcoal|helium|poison|pesticide|antifreeze|overdose"
    r"|loaded)\b|安眠药|绳子|刀片|刀|农药|百草枯|煤气|炭|天台|楼顶|跳楼|跳河|跳桥|上吊|割腕|卧轨", re.ASCII)
_SUPPORT_PLAN = re.compile(
    r"\b(?:a plan|planning|planned|plans to|know (?:exactly )?(?:how|where|when|what i'm going to do)"
    r"|know (?:which|where|what time|when) (?:[\w'-]+ ){0,2}?(?:he|she|they) (?:goes|lives|works|parks|is|gets)|worked out (?:how|when|where)"
    r"|picked (?:a|the) (?:date|day|place|spot|time)|everything is (?:arranged|planned|ready|set|sorted)"
    r"|(?:it's|it is) all (?:arranged|planned|set|sorted))\b|计划|想好|选好了|定好了|安排好了", re.ASCII)
_SUPPORT_INTENT = re.compile(r"\b(?:can't control|decided|only way out|made up my mind|no (?:turning|going) back|this is it"
                             r"|only (?:option|choice|solution|answer)(?: left)?|i(?:'m| am) serious|i mean it|not joking)\b"
                             r"|决定|唯一的出路|控制不住|下定决心|认真的|这次是真的|不是开玩笑", re.ASCII)
_SUPPORT_PREP = re.compile(r"\b(?:saved up|stockpil\w+|bought|ready)\b|药\S{0,2}买好|买好|攒够|存够|准备好", re.ASCII)
_SOON = re.compile(r"\b(?:tonight|right now|this (?:weekend|evening|afternoon)|today|tomorrow|in an hour|in a few hours"
                   r"|on (?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)|before morning)\b"
                   r"|今晚|今天晚上|马上|现在就|今天|明天|周末|这周[一二三四五六日末]|等\S{0,6}(?:睡着|出门|不在)(?:以后|之后|后|的时候)?", re.ASCII)
# Time and immediacy, for the constructs shown (wider than _SOON, which raises a level).
_WHEN = re.compile(_SOON.pattern + r"|\b(?:(?:this|next|on|by) )?(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
                   r"(?: night| evening| morning)?\b|\bnext week\b|\bon (?:my|her|his|their) birthday\b|\balready\b|\bsoon\b"
                   r"|已经|下周|周[一二三四五六日]|星期[一二三四五六天日]|等\S{1,8}?(?:之后|以后|后|完)", re.ASCII)
_INTENT = re.compile(r"\b(?:going to|gonna|want to|wanna|will|i'll|about to|decided|ready|plan to|planning to)\b"
                     r"|就|要|准备|打算|决定", re.ASCII)
# Lethality markers beside abuse (Danger Assessment): a weapon, escalation, threats to repeat.
_IPV_MARKER = re.compile(
    r"\b(?:gun|knife|knives|weapon|pistol|rifle)\b|\b(?:worse|harder|more violent) (?:than the last|every time|each time)"
    r"|\b(?:getting|gotten) (?:worse|more violent|more frequent)|\bmore and more (?:often|violent)\b|\bdo it again\b"
    r"|一次比一次|越来越(?:狠|重|凶|频繁|严重)|枪|刀", re.ASCII)
# Preparation in everyday words.  One such act is ordinary (people re-home a cat, delete an account,
# say goodbye); two or more in one message read as putting affairs in order (urgent), and one next to
# a concern match about suicide escalates it.
_PREP_EN = (
    r"\bleft (?:\w+ )?instructions (?:for|about|on)\b|\bdeleted (?:all )?(?:of )?my (?:\w+ ){0,2}?(?:accounts|profiles|photos|posts)\b"
    r"|\b(?:cat|dog|pets?|fish|rabbit|hamster)(?:'s| is| are|'re)? going to (?:my|a|the|live with)\b"
    r"|\bfound (?:a )?(?:new )?homes? for my (?:cat|dog|pets?)\b|\bre-?hom(?:ed|ing) (?:my|our) (?:cat|dog|pets?|rabbit|bird)\b"
    r"|\bgot my hands on (?:a |the )?(?:gun|pistol|rifle|rope|pills|tablets)\b"
    r"|\bin case i(?:'m| am) (?:not around|gone|not here)\b|\b(?:left|made|prepared) (?:a )?(?:folder|list|file|envelope|instructions)"
    r" (?:for|with) (?:my )?\w+ (?:with )?(?:everything|all)\b|\b(?:sorted out|sorting out|organi[sz]ed) my (?:bank|finances|accounts|papers)\b"
    r"|\beverything (?:she|he|they|you)(?:'ll| will) need (?:after|when i)\b|\b(?:wrote|written|made|updated|finished|signed) my will\b"
    r"|\b(?:cancell?ed|ended) (?:all )?my (?:subscriptions|phone contract|lease|appointments|therapy)\b"
    r"|\bpaid (?:off|back) (?:all )?(?:my debts|everyone|everything)\b|\bpasswords? (?:are )?(?:written down|for (?:my|everything))\b"
    r"|\bsaid (?:my )?goodbyes? to\b|\bwithout (?:telling|letting) (?:her|him|them|anyone) (?:know )?(?:why|what)\b"
    r"|\btonight's the night\b|\b(?:i will|i'll) miss you all\b|\b(?:can't|cannot) continue (?:the journey|down this road)\b"
    r"|\bit's time (?:for me to go|i must be going|to say goodbye)\b"
    r"|\b(?:scheduled|set up|queued|timed) (?:an? |the |some )?(?:emails?|messages?|texts?|posts?)\b"
    r"|\b(?:planned|planning|picked|chose|chosen) (?:the songs for |what i want at )?my (?:own )?funeral\b"
    r"|\b(?:bought|buying|got|picked up|ordered|purchased) (?:a |some |the |another |a second |a new )?(?:pack of |box of |bag of )?"
    r"(?:rope|charcoal|helium|gun|pistol|rifle|razor ?blades|blades|poison|pesticide|weed ?killer|antifreeze|rat poison)\b"
    r"|\b(?:duct tape|tape (?:for|up) the (?:windows|doors?|vents))\b|\bnot (?:having|for) a (?:barbecue|bbq)\b"
    r"|\bthere's (?:a |the )?(?:rope|noose|gun) (?:in|under|behind)\b"
    r"|\b(?:found|picked|chose|chosen) (?:a |the )?(?:tree|place|spot|bridge|building|beam) (?:where|that|nobody|no one|no-one)\b")
_PREP_ZH = (
    r"密码\S{0,6}(?:写下来|写好|留给|告诉|放在|写在|记在)|(?:猫|狗|宠物)\S{0,6}(?:托\S{0,4}(?:照顾|养)|交给|送给)"
    r"|托(?:朋友|人|邻居|同事|室友)\S{0,2}(?:照顾|养)"
    r"|以后\S{0,2}不(?:会)?再?(?:麻烦|打扰)(?:大家|你们|任何人|别人|你)|(?:存款|钱|卡)\S{0,6}(?:留给|转给)|(?:写|立)好?了?遗嘱"
    r"|删(?:掉|除)?了?\S{0,4}(?:所有|全部)的?\S{0,4}(?:聊天记录|照片|账号|微博|朋友圈)|(?:借的东西|欠的钱)\S{0,4}还"
    r"|欠[^,.!?。]{0,6}的?(?:钱|债)[^,.!?。]{0,4}还(?:清|了|完)"
    r"|(?:银行卡|存款|密码|钥匙|证件)[^,.!?。]{0,6}(?:交代|交给|托付|留给|转给)|以后(?:用得着|就靠你了|帮我照顾)"
    r"|(?:谢谢|感谢)(?:你们|大家|每个人)[^。!?]{0,6}(?:消息|信|话)|像(?:是)?(?:在)?告别|(?:房间|东西|屋子)\S{0,4}(?:收拾|整理)(?:得)?(?:干干净净|好了|干净了)|(?:买|准备|备)(?:好)?了?\S{0,3}(?:绳子|木?炭|农药|刀片|胶带)"
    r"|(?:去|到)(?:那座|那个|那栋)?\S{0,4}(?:桥|楼顶|天台|江边|河边|铁轨)\S{0,2}(?:看过|踩点|看了好几次)|踩(?:好)?点"
    r"|(?:知道|找好|选好)(?:了)?(?:哪里|哪儿|什么时候|在哪)\S{0,4}(?:没有?人|没有?监控|人少)")
_PREP = re.compile(f"{_PREP_EN}|{_PREP_ZH}", re.ASCII)
_PREP_BY_LANG = {"en": re.compile(_PREP_EN, re.ASCII), "zh": re.compile(_PREP_ZH)}
# An acquired means and a specific plan, with no other risk words ("I bought a rope and I know what I'm going to do").
_MEANS_ONLY = re.compile(r"\b(?:bought|got|have|'ve got|there's|there is) (?:a |the )?(?:rope|gun|noose)\b|(?:绳子|炭|农药)\S{0,3}(?:买好|准备好|都买)"
                         r"|\b(?:bought|buying|got|picked up|ordered|purchased) (?:a |some |the |another |a second |a new )?(?:pack of |box of "
                         r"|bag of )?(?:rope|charcoal|helium|gun|pistol|rifle|razor ?blades|poison|pesticide|weed ?killer|antifreeze"
                         r"|rat poison)\b|\bgot my hands on (?:a |the )?(?:gun|pistol|rifle|rope|pills|tablets)\b"
                         r"|(?:买|准备|备)(?:好)?了?\S{0,3}(?:绳子|木?炭|农药|刀片|百草枯|老鼠药)", re.ASCII)
_PLAN_ONLY = re.compile(r"\bknow (?:exactly )?(?:how|where|what i'm going to do|when)\b|\bfound (?:a |the )?(?:tree|place|spot|beam)"
                        r" (?:where|that|nobody|no one)\b|(?:知道|找好|选好)(?:了)?(?:哪里|哪儿|什么时候|在哪)\S{0,4}(?:没有?人|没有?监控|人少)"
                        r"|就等\S{0,8}(?:没人|不在|出门|睡着)", re.ASCII)
# Harm to others planned: the target's whereabouts known and a weapon carried, with no other risk words.
_TARGET_KNOWN = re.compile(r"\b(?:know|found out|figured out|worked out|learned) (?:exactly )?(?:where|when|what time) (?:he|she|they|my \w+"
                           r"|the \w+|that \w+) (?:lives?|works?|parks?|sleeps?|leaves?|gets off|finishes|goes|will be|is alone|walks)\b"
                           r"|知道(?:他|她)\S{0,6}(?:几点|住哪|住在|在哪|什么时候)", re.ASCII)
_WEAPON_CARRIED = re.compile(r"\b(?:got|have|'ve got|packed|put|brought|bringing|carrying|with) (?:a |the |my )?(?:knife|gun|pistol|bat"
                             r"|baseball bat|hammer|crowbar|tyre iron|tire iron|machete|axe|acid|petrol|gasoline) (?:in|into) (?:my )?"
                             r"(?:bag|pocket|car|backpack|coat|jacket|boot|trunk)\b|(?:刀|枪|斧头|汽油|硫酸)\S{0,6}(?:放|装|藏|带)(?:在|进)\S{0,2}"
                             r"(?:包|口袋|车|书包)", re.ASCII)

_CLAUSE = re.compile(r"[,;:，；：、。！？!?\n]|\.(?:\s|$)|\s(?:but|and|so)\s|但是?|可是", re.ASCII)
_SENTENCE = re.compile(r"[。！？!?\n]|\.(?:\s|$)|;|；", re.ASCII)
_WINDOW = 80  # characters either side in which a plan/means/time cue escalates a concern match
_CONTEXT = 200  # characters either side of a match in which its sentence's context cues count

# English rules use ASCII word boundaries, so "想suicide" (no space after a Chinese character) still matches.
_RULES_BY_LANG = {
    "en": [(rid, con, cats, lv, re.compile(p, re.ASCII)) for rid, con, cats, lv, p in _EN_RULES],
    "zh": [(rid, con, cats, lv, re.compile(p)) for rid, con, cats, lv, p in _ZH_RULES],
}
_MASK_RE = re.compile("|".join(_MASKS), re.ASCII)
# Where anything could match is found first (_gate_hits: per first character, ~0.3 ms per 1,000
# characters instead of ~1 ms for every rule over the whole text); the rules then run only within
# _MARGIN characters of those hits (longer than any rule's match).
_MARGIN = 160
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
            if op in (C.AT, C.ASSERT, C.ASSERT_NOT):  # zero-width: \b, lookbehind, lookahead
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


_ZH_FIRST_SET = first_chars("|".join(f"(?:{p})" for *_, p in _ZH_RULES))
_ZH_FIRST = re.compile("[" + re.escape("".join(sorted(_ZH_FIRST_SET))) + "]") if _ZH_FIRST_SET else None


def _gates_by_first_char(rules) -> dict[str, tuple[str, ...]]:
    """For each character a rule can start with, the patterns of only those rules (a rule whose start is not a
    small set joins every character): at a common character such as 我, 不 or "i" a few rules are tried, not all.
    Each distinct tuple is compiled once, on first use (_gate_for), so importing the module stays cheap."""
    by_char: dict[str, list[str]] = {}
    anywhere = []
    for *_, p in rules:
        if (chars := first_chars(p)) is None:
            anywhere.append(p)
        for ch in chars or ():
            by_char.setdefault(ch, []).append(p)
    return {ch: tuple(ps + anywhere) for ch, ps in by_char.items()}


@functools.cache
def _gate_for(patterns: tuple[str, ...], ascii_: bool) -> re.Pattern:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.ASCII if ascii_ else 0)


_GATES_BY_CHAR = {"zh": _gates_by_first_char(_ZH_RULES), "en": _gates_by_first_char(_EN_RULES)}
_COMPILED_GATES: dict[str, dict[str, re.Pattern]] = {"zh": {}, "en": {}}  # filled on first use
# Where a match can start: Chinese at a rule's first character, English at the start of a word (every English
# rule starts with \b; tests/test_crisis.py checks the hits equal those of the whole alternation).
_STARTS = {"zh": _ZH_FIRST, "en": re.compile("(?<![A-Za-z0-9_])[" + re.escape("".join(sorted(_GATES_BY_CHAR["en"]))) + "]")}
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
    starts, gates = _STARTS[lang], _GATES_BY_CHAR[lang]
    if starts is None:  # pragma: no cover - a Chinese rule that can start anywhere: scan with the whole alternation
        rules = _ZH_RULES if lang == "zh" else _EN_RULES
        yield from (m.span() for m in _gate_for(tuple(p for *_, p in rules), lang == "en").finditer(s))
        return
    compiled = _COMPILED_GATES[lang]
    for c in starts.finditer(s):
        ch = c.group()
        if (gate := compiled.get(ch)) is None:
            gate = compiled[ch] = _gate_for(gates[ch], lang == "en")
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
    return bool(_KIN_ZH.fullmatch(last) or last in ("女主", "男主", "主角", "主人公", "角色", "妈", "爸", "哥", "姐", "弟", "妹")
                or _SAYS_ZH.search(prefix))


_SAYS_ZH = re.compile(r"说|写|告诉|提到|讲|发消息|发帖|表示|称")
_SELF_START = re.compile(r"(?:i|i'm|i'll|i've|i'd)\b|我", re.ASCII)


@dataclass(slots=True)
class _Match:
    rid: str
    construct: str
    cats: tuple[str, ...]
    level: str
    a: int
    b: int
    caps: list[str] = field(default_factory=list)
    up: str | None = None  # why it was raised to urgent
    support: list[tuple[str, int, int]] = field(default_factory=list)  # (construct, start, end) of the cues that raised it
    modifiers: list[str] = field(default_factory=list)  # history, third_party, reassurance: why it was capped


# A supporting cue that is itself denied does not support ("denies intent or plan", 否认自杀计划, "not going to").
_NEG_CUE = re.compile(r"(?:\b(?:no|not|never|den(?:y|ies|ied|ying)|without|don't|do not|didn't|can't|won't|haven't got)\b(?:\W+\w+){0,2}\W*"
                      r"|(?:否认|没有|并无|尚无|无|不)\S{0,2})$", re.ASCII)


def _search_near(rx: re.Pattern, s: str, a: int, b: int) -> re.Match | None:
    """The first match of rx within _WINDOW characters before a or after b that is not negated."""
    for lo, hi in ((max(0, a - _WINDOW), a), (b, min(len(s), b + _WINDOW))):
        for m in rx.finditer(s, lo, hi):
            if not _NEG_CUE.search(s, max(0, m.start() - 24), m.start()):
                return m
    return None


def _escalation(s: str, a: int, b: int, cats: tuple[str, ...]) -> tuple[str, list[tuple[str, int, int]]] | None:
    """Why a concern match becomes urgent, and the supporting cues: a method or means, a plan, intent or a
    preparatory act nearby, or an imminent time with intent (C-SSRS: ideation with method, plan or intent).

    For self-harm a blade nearby is the usual tool, not a plan: only time with intent counts.
    """
    if cats != ("self_harm",):
        for con, rx in (("method", _SUPPORT_MEANS), ("plan", _SUPPORT_PLAN), ("intent", _SUPPORT_INTENT),
                        ("preparatory", _SUPPORT_PREP)):
            if m := _search_near(rx, s, a, b):
                return f"{con.replace('_', ' ')} nearby: {m.group()!r}", [(con, *m.span())]
    if "suicide" in cats and (m := _search_near(_PREP, s, a, b)):
        return f"preparation nearby: {m.group()!r}", [("preparatory", *m.span())]
    if (t := _search_near(_SOON, s, a, b)) and (i := _search_near(_INTENT, s, a, b)):
        return f"imminent time with intent: {t.group()!r}", [("timeframe", *t.span()), ("intent", *i.span())]
    return None


def _judge(text, s, idx, det, rid, con, cats, level, a, b, clauses, sentences) -> list[_Match]:
    """Apply the context rules to one match: [] when it is dropped, else [the match]."""
    zh = rid.startswith("zh.") or bool(_HAS_CJK.match(s, a))
    c0, _ = _bounds(clauses, a, len(s))
    s0, s1 = _bounds(sentences, a, len(s))
    s0, s1 = max(s0, a - _CONTEXT), min(s1, b + _CONTEXT)  # a run-on "sentence" of 1,000 characters: its near part
    sentence = s[s0:s1]
    words = text[idx[a]:idx[b - 1] + 1]
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
    asked = not zh and bool(_ASKED_EN.search(s, c0, a))  # "they ask if I am suicidal": a question, not a statement
    if negated or _NEG_AFTER.match(s, b):
        det.reasons.append(f"ignored {words!r} ({rid}): negated")
        return []
    if "self_harm" in cats and "suicide" not in cats and _ACCIDENT.search(sentence):
        det.reasons.append(f"ignored {words!r} ({rid}): an accident")
        return []
    if con == "preparatory" and (p := _PURPOSE.search(s, s0, s1)) and not _NEG_CUE.search(s, max(0, p.start() - 24), p.start()):
        det.reasons.append(f"ignored {words!r} ({rid}): an ordinary purpose ({p.group()!r})")
        return []
    reported = not _SELF_START.match(s, a) and _reported(s[s0:a], zh)  # "I'll shoot him": the subject is in the match
    if (reported or "_3p" in rid) and _FICTION.search(sentence):
        det.reasons.append(f"ignored {words!r} ({rid}): fiction or media")
        return []
    mt = _Match(rid, con, cats, level, a, b, caps=(["hedged denial"] if hedged else []) + (["asked, not stated"] if asked else []))
    # A past marker caps the match, unless a present one follows it before the match ends ("以前划一两道就够了，现在要
    # 划十几道"); for acts only a distant past counts (an attempt last week is recent, not history).
    pasts = (p for p in _PAST.finditer(s, s0, s1) if con not in _ACTS or not _RECENT.fullmatch(p.group()))
    if _NOW.search(s, s0, b):
        found_pasts = list(pasts)
        past = bool(found_pasts) and not _NOW.search(s, found_pasts[-1].end(), b)
    else:
        past = next(pasts, None) is not None
    if past:
        mt.caps.append("past or history")
        mt.modifiers.append("history")
    if "medical" in cats:
        # Acute medical danger is urgent whoever it concerns; an overdose counts as
        # suicide only when it is the speaker's own.
        if reported:
            mt.cats = ("medical",)
            mt.modifiers.append("third_party")
    else:
        if reported and "abuse" not in cats:
            mt.caps.append("reported about someone else")
            mt.modifiers.append("third_party")
        if con not in _ACTS and _NO_INTENT.search(sentence):
            mt.caps.append("ideation without intent")
        if "suicide" not in cats and con != "nssi_escalation" and _SOMETIMES.search(s[s0:a]):
            mt.caps.append("recurring, not now")  # an urge to self-harm or hit someone "sometimes"
    if level == "concern" and not mt.caps:
        if con in _ESCALATES and set(cats) & {"suicide", "self_harm", "harm_to_others"} and (esc := _escalation(s, a, b, cats)):
            mt.level, (mt.up, mt.support) = "urgent", esc
        elif con == "abuse" and (m := _search_near(_IPV_MARKER, s, a, b)):
            mt.level, mt.up = "urgent", f"lethality marker nearby: {m.group()!r}"
            mt.support = [("ipv_lethality", *m.span())]
    return [mt]


def _acquired_means(s: str, sentences) -> re.Match | None:
    """An acquired means ("bought a rope", 炭买好了) outside an ordinary purpose ("for the camping trip") or a mask."""
    for m in _MEANS_ONLY.finditer(s):
        s0, s1 = _bounds(sentences, m.start(), len(s))
        p = _PURPOSE.search(s, s0, s1)
        if p and not _NEG_CUE.search(s, max(0, p.start() - 24), p.start()):
            continue
        if any(k.start() < m.end() and m.start() < k.end() for k in _MASK_RE.finditer(s, s0, s1)):
            continue
        return m
    return None


def _reassurance(s: str, clauses) -> re.Match | None:
    """The first reassurance in the message that is not inside a doubt ("I don't know if I'm safe")."""
    for m in _REASSURE.finditer(s):
        c0, _ = _bounds(clauses, m.start(), len(s))
        if not _DOUBT.search(s, c0, m.start()):
            return m
    return None


def detect(text: str, *, lang: str | None = None, context: str = "self") -> Detection:
    """Detect crisis content in one message (Chinese, English or mixed).

    `lang` ("zh" or "en") restricts the rules to one language; by default both run,
    since code-switching ("我想 kms") is common.  `context` says whose words these are:
    "self" (the writer speaks about themselves; reports about anyone else are capped at
    concern) or "counselor_note" (a counselor writes about their client: the client — "the
    client", 来访者, and the note's pronoun for them — is assessed as the writer would be;
    reports about other people stay capped).
    """
    if lang not in (None, "zh", "en"):
        raise ValueError(f"lang must be 'zh', 'en' or None, got {lang!r}")
    if context not in CONTEXTS:
        raise ValueError(f"context must be one of {', '.join(CONTEXTS)}, got {context!r}")
    det = Detection()
    if not text or not text.strip():
        return det
    s, idx = normalize(text)
    if context == "counselor_note":
        s, idx = _client_as_self(s, idx, text)
    langs = [lang] if lang else [lg for lg, rx in (("en", _HAS_LATIN), ("zh", _HAS_CJK)) if rx.search(s)]
    regions = _regions(s, langs)
    masked = [(m.start(), m.end()) for _, r0, r1 in regions for m in _MASK_RE.finditer(s, r0, r1)]
    preps = [m.span() for lg in langs for m in _PREP_BY_LANG[lg].finditer(s)]
    if preps:  # "周末露营，买了绳子和炭": an everyday act inside a mask is no preparation either
        pmask = [m.span() for m in _MASK_RE.finditer(s)]
        preps = [(a, b) for a, b in preps if not any(a < me and ms < b for ms, me in pmask)]
    extra = bool(preps) or (context == "counselor_note")
    clauses, sentences = (_cuts(s, _CLAUSE), _cuts(s, _SENTENCE)) if regions or extra else (([], []), ([], []))
    found: list[_Match] = []
    seen = set()
    for rlang, r0, r1 in regions:
        for rid, con, cats, level, rx in _RULES_BY_LANG[rlang]:
            for m in rx.finditer(s, r0, r1):
                a, b = m.span()
                if (rid, a) in seen or a == b or any(a < me and ms < b for ms, me in masked):
                    continue
                seen.add((rid, a))
                found.extend(_judge(text, s, idx, det, rid, con, cats, level, a, b, clauses, sentences))
    # Everyday preparatory acts: two different ones ("my cat's going to … deleted my accounts") are urgent.
    prep_found: list[_Match] = []
    for a, b in preps:
        prep_found.extend(_judge(text, s, idx, det, "preparation", "preparatory", ("suicide",), "urgent", a, b,
                                 clauses, sentences))
    if len({s[p.a:p.b] for p in prep_found}) >= 2:
        found.extend(prep_found)
    # A joke ("不想活了哈哈哈", "lol I'm dead") is capped at concern, never dismissed: unless
    # another risk signal stands beside it ("i just wanna die lol nothing matters").
    serious = [m.span() for m in _NOT_JOKING.finditer(s)]
    laughing = any(not any(a <= m.start() < b for a, b in serious) for m in _LAUGH.finditer(s))
    if laughing and len({f.rid for f in found}) == 1:
        for f in found:
            if "medical" not in f.cats:
                f.caps.append("said laughing, no other risk signal")
    if not any(f.level == "urgent" and not f.caps for f in found):
        # An acquired means, or one everyday preparatory act, with a specific plan ("I bought a rope and I know
        # what I'm going to do with it", 炭买好了，就等周末家里没人).
        if (means := _acquired_means(s, sentences)) is not None:
            a, b = means.span()
            if pm := _PLAN_ONLY.search(s):
                found.append(_Match("means_and_plan", "preparatory", ("suicide",), "urgent", a, b,
                                    up=f"means with a plan: {pm.group()!r}", support=[("plan", *pm.span())]))
            elif (t := _search_near(_SOON, s, a, b)) and (i := _search_near(_INTENT, s, a, b)):
                # 农药买好了，打算这周末喝: a means and a time with intent
                found.append(_Match("means_and_time", "preparatory", ("suicide",), "urgent", a, b,
                                    up=f"means with a time: {t.group()!r}",
                                    support=[("timeframe", *t.span()), ("intent", *i.span())]))
        # Harm to others planned: the target's whereabouts and a weapon carried.
        if (tk := _TARGET_KNOWN.search(s)) and (wc := _WEAPON_CARRIED.search(s)):
            found.append(_Match("weapon_and_target", "harm_others", ("harm_to_others",), "urgent", *wc.span(),
                                up=f"a weapon carried and the target's whereabouts: {tk.group()!r}",
                                support=[("plan", *tk.span()), ("method", *wc.span())]))
    # A reassurance lowers ideation to concern (never to none) when no act or supporting construct stands
    # beside it: "I want to die, but don't worry, I won't do anything" is concern; "I've bought the
    # charcoal. Don't worry." stays urgent.
    reassured = _reassurance(s, clauses) if found else None
    if reassured is not None and not any(f.construct in _ACTS | {"intent", "plan"} and not f.caps or f.up for f in found):
        for f in found:
            if f.level == "urgent" and f.construct in _IDEATION and not f.caps:
                f.caps.append(f"reassurance ({reassured.group()!r})")
                f.modifiers.append("reassurance")
    present: set[str] = set()
    for f in found:
        level, notes = f.level, [f.up] if f.up else []
        if f.caps and level == "urgent":
            level = "concern"
            notes.append("capped at concern: " + ", ".join(f.caps))
        start, end = idx[f.a], idx[f.b - 1] + 1
        for cat in f.cats:
            det.evidence.append(Evidence(start, end, text[start:end], cat, f.rid, f.construct))
        for con, a, b in f.support:
            st, en = idx[a], idx[b - 1] + 1
            det.evidence.append(Evidence(st, en, text[st:en], f.cats[0], f"cue.{con}", con))
            present.add(con)
        present.add(f.construct)
        present.update(f.modifiers)
        det.level = max_level(det.level, level)
        det.reasons.append(f"{level}: {text[start:end]!r} ({f.rid}, {f.construct}, {'/'.join(f.cats)})"
                           + (f" — {'; '.join(notes)}" if notes else ""))
    if det.flagged:
        for f in found:  # the supporting constructs beside each match, so a counselor sees the plan, time or means too
            for con, rx in (("method", _SUPPORT_MEANS), ("plan", _SUPPORT_PLAN), ("intent", _SUPPORT_INTENT),
                            ("timeframe", _WHEN)):
                if con not in present and (m := _search_near(rx, s, f.a, f.b)):
                    st, en = idx[m.start()], idx[m.end() - 1] + 1
                    det.evidence.append(Evidence(st, en, text[st:en], f.cats[0], f"cue.{con}", con))
                    present.add(con)
        if reassured is not None:
            st, en = idx[reassured.start()], idx[reassured.end() - 1] + 1
            det.evidence.append(Evidence(st, en, text[st:en], found[0].cats[0], "cue.reassurance", "reassurance"))
            present.add("reassurance")
        if context == "counselor_note":
            present.add("counselor_note")
    det.evidence.sort(key=lambda e: (e.start, e.end))
    cats_present = {e.category for e in det.evidence}
    det.categories = [c for c in CATEGORIES if c in cats_present]
    det.constructs = [c for c in CONSTRUCTS if c in present] if det.flagged else []
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
#
# The model gets the same constructs as the rules, so both speak one vocabulary: the reply names
# the constructs it sees, and the combination rules below are the rules' own.

CONSTRUCT_HELP = {
    "wish_dead": "a passive wish to be dead or not to wake up, wanting everything to stop, wondering whether anyone "
                 "would notice one's disappearance",
    "active_ideation": "thoughts of killing oneself, wanting to die or to end one's life",
    "method": "a way to die is named or considered (jumping, hanging, an overdose, a weapon)",
    "intent": "the writer means to act (decided, going to, ready)",
    "plan": "when, where or how has been worked out",
    "preparatory": "steps taken: means bought or saved up (pills, rope, charcoal, a gun), a method researched, goodbye "
                   "letters written, belongings given away, affairs put in order",
    "attempt": "an attempt in progress or just made (pills taken, standing on a ledge or bridge and not wanting to go "
               "back), or an attempt in the past",
    "aborted_attempt": "an attempt stopped by oneself or by someone else (had the pills in hand and put them back, "
                       "climbed back over the railing, was found with the rope)",
    "nssi": "self-harm without intent to die (cutting, burning, scratching until bleeding)",
    "nssi_escalation": "self-harm getting worse: deeper, more often, needing stitches, wanting to go further this time",
    "ipv_lethality": "intimate-partner violence with lethality markers: strangulation or choking, a weapon kept or used, "
                     "threats to kill, violence getting worse, threats to repeat — danger to the writer or from the writer",
    "harm_others": "thoughts, intent or plans to hurt another person",
    "abuse": "violence, sexual abuse or degradation against the writer",
    "medical_danger": "acute medical danger: an overdose taken, cannot breathe, heavy bleeding, unconscious",
    "timeframe": "time and immediacy: now, tonight, this weekend, already, after everyone is asleep",
    "reassurance": "the writer says they are safe or will not act (it lowers ideation, never an act)",
    "hopelessness": "no future, no way out, being a burden",
    "history": "risk in the past, resolved or not recent",
    "third_party": "the risk concerns someone other than the writer (or, in a counselor's note, other than the client)",
    "counselor_note": "the text is a counselor's note about their client",
}
assert set(CONSTRUCT_HELP) == set(CONSTRUCTS)

CLASSIFIER_PROMPT = ("""You screen messages sent to a counseling service for crisis risk, using the constructs of the
Columbia Suicide Severity Rating Scale (C-SSRS), the self-harm (NSSI) literature and the Danger Assessment for
intimate-partner violence. First decide which constructs the message shows:
""" + "\n".join(f"- {k}: {v}" for k, v in CONSTRUCT_HELP.items()) + """
Then the level, by how they combine:
- "urgent": active_ideation, method, intent, plan or preparatory for the writer's own death; an attempt now, just
  made, aborted or interrupted (unless long past); nssi_escalation, or self-harm with intent and a timeframe;
  ipv_lethality; harm_others with a plan, means or timeframe; medical_danger (whoever it concerns);
  a passive wish or hopelessness together with a method, plan, preparation or timeframe with intent.
- "concern": wish_dead and hopelessness alone; nssi; abuse without a lethality marker; harm_others thoughts;
  history; third_party reports (except medical_danger); active ideation with a reassurance and no act.
  A reassurance lowers ideation to concern, never to none, and never lowers an act.
- "none": no risk, including idioms, jokes, hyperbole, fiction, topic talk ("this exam is killing me", "笑死我了").
Categories: suicide, self_harm, harm_to_others, abuse, medical.
The message may be Chinese or English. Reply with ONLY a JSON object, no prose, no code fence:
{"level": "none"|"concern"|"urgent", "categories": [...], "constructs": [...], "reason": "<one short sentence>"}""")
COUNSELOR_NOTE_PREFIX = ("[A counselor's note about their client: assess the client's risk as if the client had written "
                         "it; reports about other people are third_party.]\n")


class ClassifierError(Exception):
    """The endpoint answered with something that is not the strict JSON asked for."""


class ClassifierEngine:
    """Rules plus a model behind any OpenAI-compatible chat endpoint, combined by a fixed policy.

        eng = ClassifierEngine("http://localhost:8000/v1", model="qwen3-4b")  # key from $PSYASSIST_CRISIS_API_KEY
        eng.detect("I've been giving my things away")

    Policy: the rules always run.  Level = the higher of the rules' and the model's level,
    so the model can raise a level (it reads meaning the lexicon misses) but never lower one
    (a rules-urgent message stays urgent whatever the model says).  Categories and constructs =
    the union (the model's only when its level is not none).  Evidence spans come from the rules only.
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

    def _ask(self, text: str, context: str) -> dict:
        user = (COUNSELOR_NOTE_PREFIX if context == "counselor_note" else "") + text
        body = json.dumps({
            "model": self.model, "temperature": 0, "max_tokens": 200,
            "messages": [{"role": "system", "content": CLASSIFIER_PROMPT}, {"role": "user", "content": user}],
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

    def detect(self, text: str, *, lang: str | None = None, context: str = "self") -> Detection:
        det = detect(text, lang=lang, context=context)
        if not text.strip():
            return det
        problem, verdict = "", None
        for _ in range(1 + self.retries):
            try:
                verdict = self._ask(text, context)
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
        named = f" [{', '.join(verdict['constructs'])}]" if verdict["constructs"] else ""
        if level != det.level:
            det.reasons.append(f"{verdict['level']}: raised by the classifier{named} — {verdict['reason']}")
        else:
            det.reasons.append(f"classifier says {verdict['level']}{named}: {verdict['reason']}")
        det.level = level
        if verdict["level"] != "none":
            cats = set(det.categories) | set(verdict["categories"])
            det.categories = [c for c in CATEGORIES if c in cats]
            cons = set(det.constructs) | set(verdict["constructs"]) | ({"counselor_note"} if context == "counselor_note" else set())
            det.constructs = [c for c in CONSTRUCTS if c in cons]
        det.engine = "rules+classifier"
        return det


def parse_classifier_reply(content: str) -> dict:
    """Strict parse of the model's JSON verdict; a ```json fence around it is tolerated.

    `constructs` is optional; names outside CONSTRUCTS are dropped (the level is what decides, and a
    near-miss name should not throw the whole verdict away)."""
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
    cons = obj.get("constructs", [])
    if not isinstance(cons, list):
        raise ClassifierError(f"'constructs' must be a list: {content[:60]!r}")
    return {"level": obj["level"], "categories": cats, "constructs": [c for c in cons if c in CONSTRUCTS],
            "reason": str(obj.get("reason", ""))[:300]}


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
