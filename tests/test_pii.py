"""PII scrub: every placeholder type, its validators, and the numbers it must leave alone."""

import pytest

from psyassist.safety.pii import luhn_ok, scrub, valid_id_card

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
