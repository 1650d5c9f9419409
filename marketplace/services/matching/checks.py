"""Input checks of the matching queries: ``k``, the side, the query text, filters and access."""

from __future__ import annotations

from sqlalchemy import or_, select

from marketplace import timeutil
from marketplace.extensions import db
from marketplace.models import EntryKind, EntryStatus, Maturity, Opportunity, User
from marketplace.reference import reference
from marketplace.services import entries as entry_service
from marketplace.services.errors import NotFound, PermissionDenied, ValidationFailed
from marketplace.services.matching.items import SIDES, Entry
from matching import Filters

MAX_K = 100
MAX_QUERY_CHARS = 500


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ValidationFailed({"k": f"返回条数应为 1 到 {MAX_K} 之间的整数"})
    return k


def check_side(side: str) -> str:
    if side not in SIDES:
        raise ValidationFailed({"side": "检索对象只能是产品清单或机会清单"})
    return side


def check_query_text(text: str | None) -> str:
    text = (text or "").strip()
    if not text:
        raise ValidationFailed({"q": "请输入要检索的内容"})
    if len(text) > MAX_QUERY_CHARS:
        raise ValidationFailed({"q": f"检索内容不能超过{MAX_QUERY_CHARS}个字"})
    return text


def build_filters(
    target: str,
    region: str | None = None,
    maturity: str | None = None,
    tag: str | None = None,
    category: str | None = None,
    area: str | None = None,
    include_closed: bool = True,
) -> Filters:
    """Hard filters on the ``target`` side; an unknown or inapplicable value raises
    :class:`ValidationFailed` (field → Chinese message). Empty values mean "any".

    ``include_closed=False`` keeps only opportunities still open for answers (征集中).
    """
    check_side(target)
    ref = reference()
    errors: dict[str, str] = {}
    region, maturity, tag, category, area = (v or None for v in (region, maturity, tag, category, area))
    if region is not None and region not in ref.cities:
        errors["region"] = f"未知的地市：{region}"
    if category is not None and category not in ref.categories:
        errors["category"] = f"未知的应用领域：{category}"
    if area is not None and area not in ref.area_names:
        errors["area"] = f"未知的应用领域大类：{area}"
    if maturity is not None:
        if target != EntryKind.PRODUCT:
            errors["maturity"] = "机会清单不能按成熟度筛选"
        elif maturity not in {m.value for m in Maturity}:
            errors["maturity"] = f"未知的成熟度：{maturity}"
    if tag is not None:
        if target != EntryKind.PRODUCT:
            errors["tag"] = "机会清单不能按技术标签筛选"
        elif tag not in ref.tags:
            errors["tag"] = f"未知的技术标签：{tag}"
    if errors:
        raise ValidationFailed(errors)
    return Filters(
        categories=(category,) if category else None,
        areas=(area,) if area else None,
        region_city=region,
        maturity=maturity,
        tags=(tag,) if tag else None,
        allowed_ids=(
            open_opportunity_ids() if target == EntryKind.OPPORTUNITY and not include_closed else None
        ),
    )


def open_opportunity_ids() -> frozenset[int]:
    """Published opportunities whose deadline day (Beijing time) is not over."""
    return frozenset(
        db.session.scalars(
            select(Opportunity.id).where(
                Opportunity.status == EntryStatus.PUBLISHED,
                or_(Opportunity.deadline.is_(None), Opportunity.deadline >= timeutil.local_today()),
            )
        )
    )


def require_match_access(user: User | None, entry: Entry) -> None:
    """The matching pages of an entry are for its own organization and for organizers."""
    if entry_service.is_owner(user, entry) or is_staff(user):
        return
    if entry.is_public:
        raise PermissionDenied("只有发布单位和组织方可以查看该条目的匹配结果")
    raise NotFound("条目不存在")


def is_staff(user: User | None) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_staff)

