"""PII scrub: every placeholder type, its validators, and the numbers it must leave alone."""

import json

import pytest

from psyassist.errors import DataError
from psyassist.safety.pii import Names, load_names, luhn_ok, scrub, valid_id_card

# Invented numbers. 11010519491231002X is the textbook example ID (valid checksum);
# 4111 1111 1111 1111 the standard Luhn-valid test card.
POSITIVES = [
    ("手机13812345678，随时联系", "PHONE", "手机[PHONE]，随时联系"),
    ("我的号是138 1234 5678", "PHONE", "我的号是[PHONE]"),
    ("电话：+86 139-1234-5678。", "PHONE", "电话：[PHONE]。"),
    ("办公室010-82951332转", "PHONE", "办公室[PHONE]转"),
    ("(0755)26543210", "PHONE", "[PHONE]"),
    ("call +1 415 555 2671 today", "PHONE", "call [PHONE] today"),
    ("邮箱 Zhang.San+x@mail.example.cn。", "EMAIL", "邮箱 [EMAIL]。"),
    ("身份证11010519491231002X好了", "ID_CARD", "身份证[ID_CARD]好了"),
    ("身份证11010519491231002x", "ID_CARD", "身份证[ID_CARD]"),
    ("卡号4111 1111 1111 1111", "BANK_CARD", "卡号[BANK_CARD]"),
    ("卡号4111-1111-1111-1111。", "BANK_CARD", "卡号[BANK_CARD]。"),
    # international (E.164 with grouping); invented numbers in real formats
    ("London +44 20 7946 0958.", "PHONE", "London [PHONE]."),
    ("香港 +852 2389-2222 找我", "PHONE", "香港 [PHONE] 找我"),
    ("+44 (0)20 7946 0958", "PHONE", "[PHONE]"),
    ("+49-30-901820", "PHONE", "[PHONE]"),
    # full-width digits and signs are read as ASCII; the text around keeps its own forms
    ("手机：１３８１２３４５６７８！", "PHONE", "手机：[PHONE]！"),
    ("＋８６ １３９-１２３４-５６７８", "PHONE", "[PHONE]"),
    ("邮箱ｚｈａｎｇ＠ｍａｉｌ.ｃｎ", "EMAIL", "邮箱[EMAIL]"),
    ("卡号４１１１　１１１１　１１１１　１１１１", "BANK_CARD", "卡号[BANK_CARD]"),
    # addresses
    ("我住在北京市海淀区中关村大街27号，离公司近", "ADDRESS", "我住在[ADDRESS]，离公司近"),
    ("搬到了广东省深圳市南山区科技园路12-3号", "ADDRESS", "搬到了[ADDRESS]"),
    ("家在幸福路12号阳光小区3栋2单元501室。", "ADDRESS", "家在[ADDRESS]。"),
    ("她住阳光小区3栋501室", "ADDRESS", "她住[ADDRESS]"),
    ("住在长宁区愚园路１２３号", "ADDRESS", "住在[ADDRESS]"),
    ("I live at 221B Baker Street, London.", "ADDRESS", "I live at [ADDRESS], London."),
    ("Send it to 350 5th Ave, Suite 200 please", "ADDRESS", "Send it to [ADDRESS] please"),
    ("her flat at 12 W 34th St.", "ADDRESS", "her flat at [ADDRESS]."),
    ("moved to 1600 Pennsylvania Avenue, Apt 4B", "ADDRESS", "moved to [ADDRESS]"),
]


@pytest.mark.parametrize("text,kind,expected", POSITIVES)
def test_each_type_is_replaced_and_counted(text, kind, expected):
    out, counts = scrub(text)
    assert out == expected
    assert counts == {kind: 1}


NEGATIVES = [
    "2023-01-15 我们第一次见面",
    "2023年1月15日下午13:45",
    "每月房租3000元，存款120000元",
    "1998年出生，今年25岁",
    "急救打120，报警打110，青少年热线12355",
    "全国心理援助热线400-161-9995",
    "订单号A13812345678B",
    "11010519491231002Y",  # wrong check character
    "110105194912310021",  # right shape, wrong checksum
    "4111 1111 1111 1112",  # Luhn fails
    "版本号 v1.3.8.1234",
    "体重从65公斤降到58公斤，每天走10000步",
    "会议在3月15号下午3点，地点待定",  # 号 as a day of the month
    "我在北京市朝阳区工作，每天坐地铁2号线",  # a district and a metro line, no house number
    "第3号选手，住在幸福路附近",  # a road without a number
    "I walked 3 blocks down the road at 5 pm",
    "We met on Main Street in 2019, Dr Smith said",
    "Chapter 12 covers Python 3.11.7 and v2.0.1",
    "It costs $1,299.99 or ￥３０００ a month",
    "打１２０，或者１１０",  # full-width service numbers stay
    "+1 is what I gave it",  # a plus sign and one digit is no phone number
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_ordinary_numbers_are_left_alone(text):
    out, counts = scrub(text)
    assert out == text
    assert not counts


def test_mixed_text_counts_per_type_and_is_idempotent():
    text = "电话13812345678或13987654321，邮箱a@b.cn，身份证11010519491231002X，卡4111111111111111"
    out, counts = scrub(text)
    assert counts == {"PHONE": 2, "EMAIL": 1, "ID_CARD": 1, "BANK_CARD": 1}
    assert not any(ch.isdigit() for ch in out)
    again, counts2 = scrub(out)
    assert again == out and not counts2


def test_validators():
    assert valid_id_card("11010519491231002X")
    assert not valid_id_card("11010519491331002X")  # month 13
    assert not valid_id_card("11010519490230002X")  # 30 February
    assert luhn_ok("4111111111111111") and luhn_ok("79927398713")
    assert not luhn_ok("79927398710")


def test_names_whole_word_latin_exact_chinese_longest_first():
    names = Names(["Jane Doe", "Jane", "张三", "张三丰", "Will"])
    out, counts = scrub("Jane Doe told Janet; Jane's sister will call. Will? 张三丰和张三来了", names=names)
    assert out == "[NAME] told Janet; [NAME]'s sister will call. [NAME]? [NAME]和[NAME]来了"
    assert counts == {"NAME": 5}
    # names and numbers in one text; counted per type; idempotent
    out, counts = scrub("张三的电话13812345678", names=names)
    assert (out, counts) == ("[NAME]的电话[PHONE]", {"NAME": 1, "PHONE": 1})
    assert scrub(out, names=names) == (out, {})
    # without a list, names stay
    assert scrub("Jane Doe")[0] == "Jane Doe"
    assert scrub("Jane Doe", names=Names([]))[0] == "Jane Doe"


def test_load_names_file(tmp_path):
    f = tmp_path / "names.txt"
    f.write_text("# clients of 2024\n李小明\n\n  Jane Doe  \nＭａｒｙ\n", encoding="utf-8")
    names = load_names(f)
    assert set(names.names) == {"李小明", "Jane Doe", "Mary"}  # full-width read as ASCII, comment skipped
    assert scrub("李小明和Mary去了", names=names)[0] == "[NAME]和[NAME]去了"
    bad = tmp_path / "bad.txt"
    bad.write_text("李小明\n王\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_names(bad)
    assert e.value.line == 2 and e.value.field == "name" and "王" in str(e.value)


def test_scrub_in_the_cli_prepare_report(cli, tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_text(
        '{"messages": [{"role": "user", "content": "我住在幸福路12号，电话＋４４ ２０ ７９４６ ０９５８"},'
        ' {"role": "assistant", "content": "好的"}]}\n', encoding="utf-8")
    code, _, err = cli(["data", "prepare", src, "--out", tmp_path / "out", "--val-size", "0"])
    assert code == 0, err
    text = (tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8")
    assert "[ADDRESS]" in text and "[PHONE]" in text and "12号" not in text
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert report["pii"] == {"ADDRESS": 1, "PHONE": 1}


def test_many_names_match_like_a_flat_longest_first_list():
    """The names pattern is a prefix trie (fast for long lists); it must replace exactly what the
    plain longest-first alternation replaces."""
    import random
    import re

    rng = random.Random(0)
    syl = ["an", "na", "jo", "el", "li", "mar", "ta", "ro"]
    latin = {"".join(rng.choice(syl) for _ in range(rng.randint(1, 3))).capitalize() for _ in range(300)}
    latin |= {f"{a} {b}" for a, b in zip(sorted(latin)[:50], sorted(latin)[50:100], strict=True)}
    zh = {"".join(rng.choice("张王李赵三丰伟明小红") for _ in range(rng.randint(2, 4))) for _ in range(300)}
    names = sorted(latin | zh)
    words = [rng.choice(names) if rng.random() < 0.4 else rng.choice(syl + ["的", "和", "Jo", "Anx"])
             for _ in range(2000)]
    text = "".join(w + rng.choice([" ", "", ", ", "。"]) for w in words)

    flat = re.compile("|".join(
        rf"(?<![A-Za-z0-9]){re.escape(n)}(?![A-Za-z0-9])" if re.search("[A-Za-z]", n) else re.escape(n)
        for n in sorted(names, key=len, reverse=True)))
    expected = flat.sub("[NAME]", text)
    out, counts = scrub(text, names=Names(names))
    assert out == expected and counts["NAME"] == expected.count("[NAME]") > 500
