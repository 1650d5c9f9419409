"""统一社会信用代码 validation (GB 32100-2015).

Layout of the 18 characters:

=====  ==========================================================
pos    meaning
=====  ==========================================================
1      登记管理部门码 (registration authority)
2      机构类别码 (category, depends on the authority)
3-8    登记管理机关行政区划码 (six digits)
9-17   主体标识码: the GB 11714 organization code, whose 9th
       character is its own check character
18     校验码: weighted sum modulo 31 over the first 17 characters
=====  ==========================================================
"""

from __future__ import annotations

#: The 31 characters allowed by the standard (no I, O, S, V, Z).
CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_VALUE = {c: i for i, c in enumerate(CHARSET)}
_WEIGHTS = [pow(3, i, 31) for i in range(17)]

#: Registration authority → allowed category codes (GB 32100-2015 table 1).
AUTHORITY_CATEGORIES: dict[str, str] = {
    "1": "1239",  # 机构编制: 机关, 事业单位, 群众团体, 其他
    "2": "19",  # 外交
    "3": "1239",  # 司法行政
    "4": "19",  # 文化
    "5": "1239",  # 民政: 社会团体, 民办非企业单位, 基金会, 其他
    "6": "129",  # 旅游
    "7": "129",  # 宗教
    "8": "19",  # 工会
    "9": "123",  # 工商: 企业, 个体工商户, 农民专业合作社
    "A": "19",  # 中央军委改革和编制办公室
    "N": "1239",  # 农业
    "Y": "1",  # 其他
}

_ORG_WEIGHTS = [3, 7, 9, 10, 5, 8, 4, 2]
_ORG_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class CreditCodeError(ValueError):
    """Raised with a Chinese message explaining why a code is invalid."""


def check_character(first17: str) -> str:
    """Return the GB 32100 check character for the first 17 characters."""
    total = sum(_VALUE[c] * w for c, w in zip(first17, _WEIGHTS, strict=True))
    return CHARSET[(31 - total % 31) % 31]


def org_code_check(first8: str) -> str:
    """Return the GB 11714 check character for an 8-character organization code body."""
    total = sum(_ORG_CHARS.index(c) * w for c, w in zip(first8, _ORG_WEIGHTS, strict=True))
    value = 11 - total % 11
    return {10: "X", 11: "0"}.get(value, str(value))


def normalize(code: str) -> str:
    """Strip spaces and upper-case; full-width characters become half-width."""
    out = []
    for ch in code.strip():
        o = ord(ch)
        if 0xFF01 <= o <= 0xFF5E:
            ch = chr(o - 0xFEE0)
        if not ch.isspace():
            out.append(ch)
    return "".join(out).upper()


def validate(code: str) -> str:
    """Return the normalized code, or raise :class:`CreditCodeError`."""
    code = normalize(code or "")
    if len(code) != 18:
        raise CreditCodeError("统一社会信用代码应为18位")
    bad = [c for c in code if c not in _VALUE]
    if bad:
        raise CreditCodeError(f"统一社会信用代码含有非法字符「{bad[0]}」")
    authority, category = code[0], code[1]
    if authority not in AUTHORITY_CATEGORIES:
        raise CreditCodeError("登记管理部门码（第1位）无效")
    if category not in AUTHORITY_CATEGORIES[authority]:
        raise CreditCodeError("机构类别码（第2位）与登记管理部门不匹配")
    if not code[2:8].isdigit():
        raise CreditCodeError("行政区划码（第3-8位）应为数字")
    if org_code_check(code[8:16]) != code[16]:
        raise CreditCodeError("主体标识码（第9-17位）校验位错误")
    if check_character(code[:17]) != code[17]:
        raise CreditCodeError("校验码（第18位）错误，请核对后重新输入")
    return code


def is_valid(code: str) -> bool:
    try:
        validate(code)
    except CreditCodeError:
        return False
    return True


def make_code(authority_category: str, division: str, org_body: str) -> str:
    """Build a valid code from its parts (used by seeds and test factories).

    ``org_body`` is the 8-character organization code body without its check character.
    """
    first16 = authority_category + division + org_body
    first17 = first16 + org_code_check(org_body)
    return first17 + check_character(first17)
