"""Replace personal identifiers in counseling text with typed placeholders.

    python -c "from psyassist.safety.pii import scrub; print(scrub('微信同号13812345678，邮箱a.b@x.cn'))"

`scrub(text) -> (text, Counter)` replaces, in this order (each placeholder has no
digits, so a later pattern never re-matches an earlier replacement, and scrubbing
scrubbed text changes nothing):

- `[EMAIL]`     name@domain.tld
- `[ID_CARD]`   Chinese 18-character resident ID: region, a real birth date
                (1900–2099), sequence, and the ISO 7064 MOD 11-2 check character
                (0–9 or X), which must be right — a random 18-digit number passes
                1 time in 11
- `[BANK_CARD]` 13–19 digits (optionally grouped by spaces or dashes), first digit
                3–6 (the banking/financial major industry identifiers) and a valid
                Luhn checksum (a random number passes 1 time in 10)
- `[PHONE]`     CN mobile `1[3-9]x xxxx xxxx` with optional +86/86 and spaces or
                dashes; CN landline `0xx(x)-xxxxxxx(x)` (the local part starts 2–9);
                international `+CC …` with 8–15 digits in all (E.164 allows 15)

Not scrubbed, on purpose: dates (2023-01-15, 2023年1月15日), years, times (13:45),
amounts (3000元), short service numbers (110, 120, 12355) and 400/800 hotlines,
which are public numbers a counselor may legitimately give.  Digit runs are only
matched when not glued to other ASCII letters or digits, so order numbers and
hashes are left alone.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import date

# ASCII letters/digits around a match mean it is part of a longer token (hash, order number).
_B = r"(?<![0-9A-Za-z])"
_E = r"(?![0-9A-Za-z])"

EMAIL_RE = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
                      re.ASCII)
ID_CARD_RE = re.compile(_B + r"[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]" + _E)
BANK_CARD_RE = re.compile(r"(?<![0-9A-Za-z+])" + r"[3-6]\d{3}(?:[ -]?\d){9,15}" + _E)
MOBILE_RE = re.compile(r"(?<![0-9A-Za-z+])(?:\+?86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}" + _E)
LANDLINE_RE = re.compile(_B + r"(?:\(0\d{2,3}\)|（0\d{2,3}）|0\d{2,3})[ -]?[2-9]\d{6,7}" + _E)
INTL_RE = re.compile(r"(?<![0-9A-Za-z+])\+[1-9]\d{0,2}(?:[ .-]?\(?\d{1,4}\)?){2,5}" + _E)

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def valid_id_card(s: str) -> bool:
    """18-character CN resident ID: a real birth date and the MOD 11-2 check character."""
    if len(s) != 18 or not s[:17].isdigit():
        return False
    try:
        date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        return False
    total = sum(int(c) * w for c, w in zip(s[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == s[17].upper()


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _digits(s: str) -> str:
    return "".join(c for c in s if c.isdigit())


def _intl_ok(s: str) -> bool:
    return 8 <= len(_digits(s)) <= 15


def _bank_ok(s: str) -> bool:
    d = _digits(s)
    return 13 <= len(d) <= 19 and luhn_ok(d)


# (placeholder type, pattern, validator or None); order matters, see the module docstring.
_RULES = (
    ("EMAIL", EMAIL_RE, None),
    ("ID_CARD", ID_CARD_RE, valid_id_card),
    ("BANK_CARD", BANK_CARD_RE, _bank_ok),
    ("PHONE", MOBILE_RE, None),
    ("PHONE", LANDLINE_RE, None),
    ("PHONE", INTL_RE, _intl_ok),
)


def scrub(text: str) -> tuple[str, Counter]:
    """Return (text with PII replaced by [TYPE] placeholders, Counter of replacements per TYPE)."""
    counts: Counter = Counter()
    if not any(c.isdigit() or c == "@" for c in text):  # fast path: most turns hold neither
        return text, counts
    for kind, pattern, ok in _RULES:

        def repl(m: re.Match, kind=kind, ok=ok) -> str:
            if ok is not None and not ok(m.group(0)):
                return m.group(0)
            counts[kind] += 1
            return f"[{kind}]"

        text = pattern.sub(repl, text)
    return text, counts
