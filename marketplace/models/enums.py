"""Code values stored in the database and their Chinese labels for the UI."""

from __future__ import annotations

from enum import StrEnum


class LabelledEnum(StrEnum):
    """A string enum whose members carry a Chinese label."""

    label: str

    def __new__(cls, value: str, label: str):
        obj = str.__new__(cls, value)
        obj._value_ = value
        obj.label = label
        return obj

    @classmethod
    def choices(cls) -> list[tuple[str, str]]:
        return [(m.value, m.label) for m in cls]

    @classmethod
    def label_of(cls, value: str | None) -> str:
        try:
            return cls(value).label
        except ValueError:
            return value or ""


class OrgKind(LabelledEnum):
    GOVERNMENT = "government", "政府部门"
    INSTITUTION = "institution", "事业单位"
    SOE = "soe", "国有企业"
    ENTERPRISE = "enterprise", "民营企业"
    RESEARCH = "research", "科研院所"
    SERVICE = "service", "服务机构"


#: Kinds of organization allowed to own 产品清单 entries.
PRODUCT_OWNER_KINDS = frozenset({OrgKind.ENTERPRISE, OrgKind.RESEARCH, OrgKind.SERVICE})


class Role(LabelledEnum):
    ADMIN = "admin", "系统管理员"
    ORGANIZER = "organizer", "组织方"
    MEMBER = "member", "单位用户"


class EntryStatus(LabelledEnum):
    DRAFT = "draft", "草稿"
    SUBMITTED = "submitted", "待审核"
    RETURNED = "returned", "退回修改"
    APPROVED = "approved", "已入选待发布"
    PUBLISHED = "published", "已发布"
    WITHDRAWN = "withdrawn", "已撤回"


class RevisionStatus(LabelledEnum):
    SUBMITTED = "submitted", "修改待审核"
    RETURNED = "returned", "修改被退回"
    APPROVED = "approved", "修改已通过"
    DISCARDED = "discarded", "已作废"


class Tier(LabelledEnum):
    MAJOR = "major", "综合性重大场景"
    INTEGRATED = "integrated", "行业领域集成式场景"
    FOCUSED = "focused", "高价值小切口场景"


class CooperationMode(LabelledEnum):
    PROCUREMENT = "procurement", "设备采购/租赁"
    OPERATION = "operation", "商业运营"
    JOINT_VENTURE = "joint_venture", "合作经营"
    JOINT_RND = "joint_rnd", "联合研发"
    OTHER = "other", "其他"


class Maturity(LabelledEnum):
    RND = "rnd", "研发中"
    PILOT = "pilot", "试点应用"
    SCALE = "scale", "规模化推广"


class EntryKind(LabelledEnum):
    OPPORTUNITY = "opportunity", "机会清单"
    PRODUCT = "product", "产品清单"


class BatchStatus(LabelledEnum):
    COLLECTING = "collecting", "征集中"
    PUBLISHED = "published", "已发布"


class ScenarioStage(LabelledEnum):
    """Where a published need is in the province's cycle (场景生命周期).

    机会发布 → 创新研发 → 孵化试点 → 示范推广, or 终止 from any stage before 示范推广. The
    transitions (who may move a need, from which stage) live in ``services/lifecycle.py``.
    """

    PUBLISHED = "published", "机会发布"
    RND = "rnd", "创新研发"
    PILOT = "pilot", "孵化试点"
    DEMONSTRATION = "demonstration", "示范推广"
    TERMINATED = "terminated", "终止"
