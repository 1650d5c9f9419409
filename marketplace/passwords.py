"""The password rule: long enough, and not common or guessable.

A password is refused when it is

* shorter than :data:`MIN_LENGTH` characters (or longer than :data:`MAX_LENGTH`);
* one of the common passwords in ``data/common_passwords.txt`` (about 12,700, lower-case),
  also after removing the digits and symbols people put around a common word
  (``Password2026!`` → ``password``);
* a keyboard or alphabet run, or mostly made of them (``qwertyuiop``, ``1234567890``,
  ``1qaz2wsx3edc``, ``abcdefghij``), or a few characters repeated (``aaaaaaaaaa``, ``abababab``);
* built from the account's own details: once the email's name part, the person's name, the
  organization's name and its credit code are taken out (an attacker knows them), fewer than
  :data:`MIN_LENGTH` characters are left.

Every refusal comes with a Chinese explanation for the form.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

MIN_LENGTH = 10
MAX_LENGTH = 128
COMMON_PASSWORDS_FILE = Path(__file__).resolve().parent / "data" / "common_passwords.txt"

#: Shown beside the password field.
RULE_HINT = (
    f"至少{MIN_LENGTH}位；不能是常见密码、键盘或数字顺序（如 qwerty、123456）、重复字符，"
    "也不能包含邮箱、姓名或单位名称。建议用几个不相关的词加数字或符号组成。"
)

_SEQUENCES = (
    "abcdefghijklmnopqrstuvwxyz",
    "01234567890",
    "qwertyuiop",
    "asdfghjkl",
    "zxcvbnm",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
    "qazwsxedcrfvtgbyhnujmikolp",
    "1q2w3e4r5t6y7u8i9o0p",
    "!@#$%^&*()",
)
_AFFIXES = re.compile(r"^[\W\d_]+|[\W\d_]+$")
_RUN = 4


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line for line in (raw.strip() for raw in lines) if line and not line.startswith("#"))


def _run_covered(text: str) -> int:
    """How many characters of ``text`` belong to a keyboard/alphabet run of 4 or more."""
    covered = [False] * len(text)
    for seq in _SEQUENCES:
        for source in (seq, seq[::-1]):
            for start in range(len(text)):
                end = start + _RUN
                if end > len(text) or text[start:end] not in source:
                    continue
                while end < len(text) and text[start : end + 1] in source:
                    end += 1
                for i in range(start, end):
                    covered[i] = True
    return sum(covered)


def _is_repetitive(text: str) -> bool:
    """A few characters repeated (``aaaaaaaaaa``, ``abcabcabcabc``, ``1212121212``)."""
    if len(set(text)) <= 2:
        return True
    for size in range(1, len(text) // 2 + 1):
        if len(text) % size == 0 and text[:size] * (len(text) // size) == text:
            return True
    return False


def _personal_parts(email: str = "", name: str = "", organization: str = "",
                    credit_code: str = "") -> list[str]:
    parts = []
    local = (email or "").split("@")[0].lower()
    parts += [p for p in re.split(r"[._\-+]", local) if len(p) >= 3]
    if len(local) >= 3:
        parts.append(local)
    for value, minimum in ((name, 2), (organization, 2), (credit_code, 6)):
        value = (value or "").strip().lower()
        if len(value) >= minimum:
            parts.append(value)
    return parts


def password_problem(
    password: str,
    *,
    email: str = "",
    name: str = "",
    organization: str = "",
    credit_code: str = "",
) -> str | None:
    """The Chinese reason why ``password`` is refused, or None when it is acceptable."""
    password = password or ""
    if len(password) < MIN_LENGTH:
        return f"密码至少{MIN_LENGTH}位"
    if len(password) > MAX_LENGTH:
        return f"密码不能超过{MAX_LENGTH}位"
    lowered = password.lower()
    common = common_passwords()
    core = _AFFIXES.sub("", lowered)
    if lowered in common or (len(core) >= 4 and core in common):
        return "该密码过于常见，很容易被猜中，请换一个"
    if _is_repetitive(lowered):
        return "密码不能由重复的字符组成"
    if len(lowered) - _run_covered(lowered) < 4:
        return "密码不能是键盘或字母数字顺序（如 qwerty、123456、abcdef）"
    rest = lowered
    for part in sorted(_personal_parts(email, name, organization, credit_code), key=len, reverse=True):
        rest = rest.replace(part, "")
    if len(rest) < MIN_LENGTH:
        return "密码不能主要由邮箱、姓名或单位名称等个人信息组成"
    return None
