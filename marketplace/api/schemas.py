"""Pydantic models of the API: query parameters (parsed and documented) and response bodies
(documented, and checked against real responses by the tests and by schemathesis).

Response models forbid extra keys, so a field added to a response without being documented here
fails the schema checks.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from marketplace.models import EntryStatus, Maturity, Tier
from marketplace.paging import MAX_PAGE
from marketplace.services.matching import MAX_K, MAX_QUERY_CHARS

ERROR_DESCRIPTIONS = {
    400: "参数无效（含 NUL 字符、超出范围、未知的地市/领域/标签等），message 说明原因",
    401: "需要认证：未登录，或 API 令牌无效、已过期、已被撤销",
    403: "无权访问：只有条目的发布单位成员和组织方可以查看其匹配结果",
    404: "条目不存在或未公开",
    429: "请求过于频繁（按令牌或来源地址限流），请在 Retry-After 秒后重试",
}

MATURITIES = tuple(m.value for m in Maturity)
STATUSES = tuple(s.value for s in EntryStatus)
TIERS = tuple(t.value for t in Tier)


def _enum_source(source: str, description: str, example: str) -> Any:
    return Field(
        default=None,
        description=description,
        json_schema_extra={"x-enum-source": source, "examples": [example]},
    )


# -------------------------------------------------------------------- query parameters


class Query(BaseModel):
    """Query parameters of one operation. ``messages`` holds the Chinese message of each
    parameter (``{value}`` is the refused value)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    messages: ClassVar[dict[str, str]] = {}

    @classmethod
    def message_for(cls, name: str, value: str | None = None) -> str:
        template = {**COMMON_MESSAGES, **cls.messages}.get(name, f"参数 {name} 无效")
        return template.format(value=value if value is not None else "")

    @classmethod
    def enum_sources(cls) -> dict[str, str]:
        out = {}
        for name, info in cls.model_fields.items():
            extra = info.json_schema_extra
            if isinstance(extra, dict) and "x-enum-source" in extra:
                out[name] = str(extra["x-enum-source"])
        return out

    @classmethod
    def blank_is_absent(cls) -> tuple[str, ...]:
        """Filters where ``?region=`` means "any" (as on the pages' filter forms)."""
        return tuple(cls.enum_sources()) + tuple(
            name for name in ("maturity", "state") if name in cls.model_fields
        )


COMMON_MESSAGES = {
    "k": f"k 应为 1 到 {MAX_K} 之间的整数",
    "page": f"page 应为 1 到 {MAX_PAGE} 之间的整数",
    "per_page": f"per_page 应为 1 到 {MAX_K} 之间的整数",
    "region": "未知的地市：{value}",
    "category": "未知的应用领域：{value}",
    "area": "未知的应用领域大类：{value}",
    "tag": "未知的技术标签：{value}",
    "maturity": "成熟度只能是 " + "、".join(MATURITIES),
    "state": "state 只能是 open（征集中）或 closed（已截止）",
    "include_closed": "include_closed 只能是 0、1、true 或 false",
    "side": "side 只能是 products 或 opportunities",
    "q": f"请输入要检索的内容（1 到 {MAX_QUERY_CHARS} 个字）",
}

K = Annotated[int, Field(ge=1, le=MAX_K, description=f"返回条数，1–{MAX_K}", examples=[10])]
Page = Annotated[int, Field(ge=1, le=MAX_PAGE, description="页码，从 1 开始", examples=[1])]
PerPage = Annotated[int, Field(ge=1, le=MAX_K, description=f"每页条数，1–{MAX_K}", examples=[20])]
IncludeClosed = Annotated[
    bool, Field(description="是否包含已截止的场景需求（默认只返回征集中的）", examples=[False])
]
Region = Annotated[str | None, _enum_source("cities", "所在设区市", "南昌市")]
Category = Annotated[str | None, _enum_source("categories", "应用领域（小类）", "交通出行")]
Area = Annotated[str | None, _enum_source("areas", "应用领域大类", "数字生活")]
Tag = Annotated[str | None, _enum_source("tags", "技术标签（只适用于产品）", "人工智能")]
MaturityParam = Annotated[
    Literal[MATURITIES] | None,  # type: ignore[valid-type]
    Field(description="产品成熟度：rnd 研发中、pilot 试点应用、scale 规模化推广", examples=["pilot"]),
]


class OpportunityProductsQuery(Query):
    k: K = 20
    region: Region = None
    maturity: MaturityParam = None
    tag: Tag = None


class ProductOpportunitiesQuery(Query):
    k: K = 20
    region: Region = None
    category: Category = None
    include_closed: IncludeClosed = False


class SearchQuery(Query):
    q: str = Field(
        min_length=1,
        max_length=MAX_QUERY_CHARS,
        pattern=r"\S",
        description=f"检索内容（自由文本，1–{MAX_QUERY_CHARS} 字）",
        examples=["独居老人跌倒检测"],
    )
    side: Literal["products", "opportunities"] = Field(
        default="products", description="检索产品清单（products）或机会清单（opportunities）"
    )
    k: K = 20
    region: Region = None
    category: Category = None
    maturity: MaturityParam = None
    tag: Tag = None
    include_closed: IncludeClosed = False


class OpportunityListQuery(Query):
    page: Page = 1
    per_page: PerPage = 20
    region: Region = None
    area: Area = None
    category: Category = None
    state: Literal["open", "closed"] | None = Field(
        default=None, description="open：征集中；closed：已截止；不填：全部", examples=["open"]
    )


class ProductListQuery(Query):
    page: Page = 1
    per_page: PerPage = 20
    region: Region = None
    area: Area = None
    category: Category = None
    maturity: MaturityParam = None
    tag: Tag = None


# -------------------------------------------------------------------- responses


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ApiErrorDetail(Strict):
    code: int = Field(description="HTTP 状态码", examples=[401])
    message: str = Field(description="中文说明", examples=["请先登录"])


class ApiError(Strict):
    """Every error of the API has this shape."""

    error: ApiErrorDetail = Field(description="错误码与中文说明")


class Evidence(Strict):
    query_sentence: str
    item_sentence: str
    cosine: float


class Hit(Strict):
    rank: int = Field(ge=1, description="名次，从 1 开始")
    id: int
    categories: list[str] = Field(description="应用领域")
    url: str = Field(description="门户上的详情页地址")
    organization: str = Field(description="发布单位（已认证的名称）")
    region: str
    score: float = Field(description="综合得分")
    dense: float = Field(description="语义相似度")
    lexical: float = Field(description="关键词相关度（BM25）")
    structured: float = Field(description="领域、地区、标签、成熟度等结构化信号")
    breakdown: dict[str, float] = Field(description="得分构成")
    matched_terms: list[str] = Field(description="双方都出现的词")
    related_terms: list[Annotated[list[str], Field(min_length=2, max_length=2)]] = Field(
        description="同义/近义词对（查询中的词, 条目中的词）"
    )
    evidence: Evidence | None = Field(description="语义匹配时最接近的一对句子")
    reasons: list[str]
    reason: str = Field(description="推荐理由", examples=["推荐理由：同属交通出行领域"])


class ProductHit(Hit):
    name: str
    maturity: str
    tags: list[str]


class OpportunityHit(Hit):
    title: str
    deadline: date | None = Field(description="答题截止日（北京时间）")
    open: bool = Field(description="是否征集中")


class OpportunityRef(Strict):
    kind: Literal["opportunity"]
    id: int
    title: str
    status: Literal[STATUSES]  # type: ignore[valid-type]
    deadline: date | None
    open: bool
    k: int
    filters: dict[str, str | None]


class ProductRef(Strict):
    kind: Literal["product"]
    id: int
    name: str
    status: Literal[STATUSES]  # type: ignore[valid-type]
    k: int
    filters: dict[str, str | None]
    include_closed: bool


class SearchEcho(Strict):
    q: str
    side: Literal["products", "opportunities"]
    k: int
    filters: dict[str, str | None]
    include_closed: bool


class OpportunityProducts(Strict):
    """Products ranked for one opportunity."""

    query: OpportunityRef = Field(description="被匹配的需求与所用参数")
    encoder: str | None = Field(description="所用语义编码器")
    results: list[ProductHit] = Field(description="按综合得分从高到低排列的已发布产品")


class ProductOpportunities(Strict):
    """Opportunities ranked for one product."""

    query: ProductRef = Field(description="被匹配的产品与所用参数")
    encoder: str | None = Field(description="所用语义编码器")
    results: list[OpportunityHit] = Field(description="按综合得分从高到低排列的已发布需求")


class SearchResults(Strict):
    query: SearchEcho = Field(description="检索内容与所用参数")
    encoder: str | None = Field(description="所用语义编码器")
    results: list[ProductHit] | list[OpportunityHit] = Field(
        description="side=products 时为产品，side=opportunities 时为需求，按综合得分从高到低"
    )


class OpportunitySummary(Strict):
    id: int
    title: str
    description: str
    organization: str = Field(description="发布单位（已认证的名称）")
    region: str
    area: str
    category: str
    tier: Literal[TIERS]  # type: ignore[valid-type]
    stage: str = Field(description="场景阶段")
    deadline: date | None = Field(description="答题截止日（北京时间）")
    open: bool = Field(description="是否征集中")
    batch: str | None = Field(description="所属批次")
    published_at: datetime | None
    url: str


class ProductSummary(Strict):
    id: int
    name: str
    description: str
    organization: str = Field(description="提供单位（已认证的名称）")
    region: str
    maturity: Literal[MATURITIES]  # type: ignore[valid-type]
    categories: list[str]
    tags: list[str]
    batch: str | None
    published_at: datetime | None
    url: str


class PageInfo(Strict):
    page: int
    per_page: int
    total: int
    pages: int


class OpportunityList(Strict):
    """A page of published opportunities: open ones first, then newest first."""

    pagination: PageInfo = Field(description="页码、每页条数、总条数、总页数")
    results: list[OpportunitySummary] = Field(description="本页的已发布需求")


class ProductList(Strict):
    """A page of published products, newest first."""

    pagination: PageInfo = Field(description="页码、每页条数、总条数、总页数")
    results: list[ProductSummary] = Field(description="本页的已发布产品")


class OpenApiDocument(BaseModel):
    """This document (OpenAPI 3.1)."""

    model_config = ConfigDict(extra="allow")
    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
