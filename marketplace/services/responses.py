"""企业答题 (responses) and 场景建设联合体 (consortia): rules, permissions and state changes.

Response lifecycle, declared as data in :data:`TRANSITIONS` (the service, the templates'
buttons and the tests all read it)::

    draft ──submit*──> submitted ──shortlist──> shortlisted ──select──> selected
      │                  │    └──────────select / reject──────────┐   (已揭榜)
      │                  │                  │                    v
      └──withdraw──> withdrawn <──withdraw*─┴─────────────── rejected
                                                     (* only until the deadline)

* Only members of a verified enterprise, research institute or service organization answer, and
  only a published need that is still open (征集中). One live (not withdrawn) response per
  organization per need.
* A submitted response can be edited until the deadline; a draft at any time (it is private).
* The need's publisher and organizers review (入围 / 选定 / 未选定, with a comment the firm sees).
* A response is visible to its organization (and the accepted members of its consortium), the
  need's publisher and organizers; a draft only to its organization. Nothing here is public
  except the names of selected firms (已揭榜).

Consortium: the lead invites verified organizations with a role; each answers (accept or
decline); the lead may revoke a pending invitation. Its response can be submitted only when
nobody is pending and at least one member besides the lead has accepted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, BinaryIO

from sqlalchemy import func, or_, select
from sqlalchemy.orm import joinedload, selectinload

from marketplace import timeutil
from marketplace.extensions import db
from marketplace.models import (
    Consortium,
    ConsortiumMember,
    ConsortiumRole,
    EntryStatus,
    InvitationStatus,
    Opportunity,
    Organization,
    Product,
    Response,
    ResponseProduct,
    ResponseStatus,
    StoredFile,
    User,
)
from marketplace.models.base import utcnow
from marketplace.models.enums import PRODUCT_OWNER_KINDS, OrgKind
from marketplace.services import audit, notifications, uploads
from marketplace.services.errors import (
    DomainError,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)

MIN_SUMMARY = 50
MAX_SUMMARY = 3000
MAX_PLAN = 3000
MAX_COMMENT = 2000
MAX_QUOTE = Decimal("9999999999")
MAX_CONSORTIUM_MEMBERS = 20
ATTACHMENT_POLICY = uploads.UploadPolicy(purpose="response", types=frozenset({"application/pdf"}))

#: Statuses the publisher sees (a draft is the firm's own business).
VISIBLE_TO_REVIEWERS = frozenset(
    {ResponseStatus.SUBMITTED, ResponseStatus.SHORTLISTED, ResponseStatus.SELECTED,
     ResponseStatus.REJECTED, ResponseStatus.WITHDRAWN}
)
LIVE = frozenset(s for s in ResponseStatus if s != ResponseStatus.WITHDRAWN)

RESPONDENT = "respondent"
REVIEWER = "reviewer"


@dataclass(frozen=True)
class Transition:
    """One step of the response workflow."""

    action: str
    sources: frozenset[str]
    target: str
    who: str
    label: str
    done: str
    style: str = "primary"
    #: Sources from which the step is allowed only until the deadline.
    until_deadline: frozenset[str] = frozenset()
    confirm: str | None = None


TRANSITIONS: dict[str, Transition] = {
    t.action: t
    for t in (
        Transition(
            "submit", frozenset({ResponseStatus.DRAFT}), ResponseStatus.SUBMITTED, RESPONDENT,
            "提交答题", "答题已提交，发布单位将收到通知。",
            until_deadline=frozenset({ResponseStatus.DRAFT}),
        ),
        Transition(
            "withdraw",
            frozenset({ResponseStatus.DRAFT, ResponseStatus.SUBMITTED, ResponseStatus.SHORTLISTED}),
            ResponseStatus.WITHDRAWN, RESPONDENT, "撤回答题", "答题已撤回。", style="outline-danger",
            until_deadline=frozenset({ResponseStatus.SUBMITTED, ResponseStatus.SHORTLISTED}),
            confirm="确定撤回该答题吗？撤回后可重新答题（截止前）。",
        ),
        Transition(
            "shortlist", frozenset({ResponseStatus.SUBMITTED}), ResponseStatus.SHORTLISTED, REVIEWER,
            "入围", "已标记为入围，答题单位将收到通知。", style="outline-primary",
        ),
        Transition(
            "select", frozenset({ResponseStatus.SUBMITTED, ResponseStatus.SHORTLISTED}),
            ResponseStatus.SELECTED, REVIEWER, "选定", "已选定，需求将公开显示为「已揭榜」。",
            style="success",
        ),
        Transition(
            "reject", frozenset({ResponseStatus.SUBMITTED, ResponseStatus.SHORTLISTED}),
            ResponseStatus.REJECTED, REVIEWER, "未选定", "已标记为未选定，答题单位将收到通知。",
            style="outline-secondary",
        ),
    )
}
REVIEW_ACTIONS = tuple(a for a, t in TRANSITIONS.items() if t.who == REVIEWER)


# ---------------------------------------------------------------- who is who


def _member_of(user: User | None, organization_id: int | None) -> bool:
    return bool(
        user is not None
        and user.is_authenticated
        and user.organization_id is not None
        and organization_id is not None
        and user.organization_id == organization_id
    )


def _is_staff(user: User | None) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_staff)


def is_publisher(user: User | None, opportunity: Opportunity) -> bool:
    return _member_of(user, opportunity.publisher_id)


def is_respondent(user: User | None, response: Response) -> bool:
    """A member of the answering organization (the lead, for a consortium)."""
    return _member_of(user, response.organization_id)


def _consortium_member_org_ids(consortium: Consortium | None, statuses: Iterable[str]) -> set[int]:
    if consortium is None:
        return set()
    wanted = set(statuses)
    return {m.organization_id for m in consortium.members if m.status in wanted}


def _response_deadline_passed(response: Response) -> bool:
    return timeutil.deadline_passed(response.opportunity.deadline)


def respond_problem(user: User | None, opportunity: Opportunity) -> str | None:
    """Why ``user`` may not start a response to ``opportunity`` (None: they may)."""
    if user is None or not user.is_authenticated:
        return "请先登录企业账号后再答题"
    organization = user.organization
    if organization is None:
        return "组织方账号不能答题"
    if organization.kind not in PRODUCT_OWNER_KINDS:
        return (f"{organization.kind_label}不能答题：只有{OrgKind.ENTERPRISE.label}、"
                f"{OrgKind.RESEARCH.label}和{OrgKind.SERVICE.label}可以答题")
    if not organization.verified:
        return "本单位尚未通过组织方认证，暂不能答题"
    if organization.id == opportunity.publisher_id:
        return "不能答复本单位发布的需求"
    if opportunity.status != EntryStatus.PUBLISHED:
        return "该需求未公开，不能答题"
    if timeutil.deadline_passed(opportunity.deadline):
        return f"该需求已于 {opportunity.deadline:%Y-%m-%d} 截止答题"
    if live_response(organization.id, opportunity.id) is not None:
        return "本单位已答复该需求，请在「我的答题」中查看或修改"
    return None


def transition_problem(user: User | None, response: Response, action: str) -> str | None:
    """Why ``user`` may not perform ``action`` on ``response`` now (None: they may)."""
    step = TRANSITIONS.get(action)
    if step is None:
        return "未知的操作"
    if step.who == RESPONDENT and not is_respondent(user, response):
        return "只有答题单位可以执行此操作"
    if step.who == REVIEWER and not (is_publisher(user, response.opportunity) or _is_staff(user)):
        return "只有需求发布单位和组织方可以评审答题"
    if response.status not in step.sources:
        return f"「{response.status_label}」状态的答题不能{step.label}"
    if response.status in step.until_deadline and _response_deadline_passed(response):
        return f"答题已于 {response.opportunity.deadline:%Y-%m-%d} 截止，不能再{step.label}"
    if action == "submit":
        if response.opportunity.status != EntryStatus.PUBLISHED:
            return "该需求已不在公开清单中，不能提交"
        if not response.organization.verified:
            return "本单位尚未通过组织方认证，暂不能提交"
        if response.consortium is not None and not response.consortium.ready:
            return "联合体还有成员未答复邀请，或除牵头单位外尚无成员接受邀请，暂不能提交"
        if not response.product_rows:
            return "请至少选择一个产品"
    return None


def edit_problem(user: User | None, response: Response) -> str | None:
    if not is_respondent(user, response):
        return "只有答题单位可以修改答题"
    if response.status == ResponseStatus.DRAFT:
        return None
    if response.status != ResponseStatus.SUBMITTED:
        return f"「{response.status_label}」状态的答题不能修改"
    if _response_deadline_passed(response):
        return "答题已截止，不能再修改"
    return None


def can_view(user: User | None, response: Response) -> bool:
    if is_respondent(user, response):
        return True
    if user is not None and user.is_authenticated and user.organization_id in _consortium_member_org_ids(
        response.consortium, (InvitationStatus.ACCEPTED,)
    ):
        return True
    if response.status == ResponseStatus.DRAFT:
        return False
    if response.status == ResponseStatus.WITHDRAWN and response.submitted_at is None:
        return False
    return is_publisher(user, response.opportunity) or _is_staff(user)


def can(user: User | None, action: str, obj: Any) -> bool:
    """The permission function of this domain: may ``user`` do ``action`` on ``obj`` now?

    Objects and actions:

    * :class:`Opportunity`: ``respond``, ``form_consortium``, ``view_responses``
    * :class:`Response`: ``view``, ``download``, ``edit`` and every action of :data:`TRANSITIONS`
    * :class:`Consortium`: ``view``, ``invite``, ``revoke``
    * :class:`ConsortiumMember`: ``answer``
    """
    return problem(user, action, obj) is None


def problem(user: User | None, action: str, obj: Any) -> str | None:
    """Like :func:`can`, but says why not (a Chinese message), or None when allowed."""
    if isinstance(obj, Opportunity):
        if action in ("respond", "form_consortium"):
            return respond_problem(user, obj)
        if action == "view_responses":
            if is_publisher(user, obj) or _is_staff(user):
                return None
            return "只有需求发布单位和组织方可以查看答题"
    elif isinstance(obj, Response):
        if action in ("view", "download"):
            return None if can_view(user, obj) else "没有权限查看该答题"
        if action == "edit":
            return edit_problem(user, obj)
        if action in TRANSITIONS:
            return transition_problem(user, obj, action)
    elif isinstance(obj, Consortium):
        if action == "view":
            return None if can_view_consortium(user, obj) else "没有权限查看该联合体"
        if action in ("invite", "revoke"):
            return consortium_change_problem(user, obj)
    elif isinstance(obj, ConsortiumMember):
        if action == "answer":
            return answer_problem(user, obj)
    return "不支持的操作"


def _entitled(user: User | None, action: str, obj: Any) -> bool:
    """Whether ``user`` holds the role ``action`` needs, so that a refusal is about the state."""
    if isinstance(obj, Opportunity):
        if action not in ("respond", "form_consortium"):
            return False
        org = user.organization if user is not None and user.is_authenticated else None
        return bool(org is not None and org.kind in PRODUCT_OWNER_KINDS and org.verified
                    and org.id != obj.publisher_id)
    if isinstance(obj, Response):
        step = TRANSITIONS.get(action)
        if action == "edit" or (step is not None and step.who == RESPONDENT):
            return is_respondent(user, obj)
        return can_view(user, obj) and (is_publisher(user, obj.opportunity) or _is_staff(user))
    if isinstance(obj, Consortium):
        return _member_of(user, obj.lead_organization_id)
    if isinstance(obj, ConsortiumMember):
        return _member_of(user, obj.organization_id)
    return False


def require(user: User | None, action: str, obj: Any) -> None:
    """Raise unless :func:`can`: NotFound for what the user may not see, InvalidTransition when
    the user holds the right role but the state forbids the step, PermissionDenied otherwise."""
    reason = problem(user, action, obj)
    if reason is None:
        return
    if action in ("view", "download"):
        raise NotFound("答题不存在" if isinstance(obj, Response) else "联合体不存在")
    if _entitled(user, action, obj):
        raise InvalidTransition(reason)
    raise PermissionDenied(reason)


def allowed_actions(user: User | None, response: Response) -> list[Transition]:
    """The workflow buttons to show ``user`` on ``response``."""
    return [t for a, t in TRANSITIONS.items() if transition_problem(user, response, a) is None]


# ---------------------------------------------------------------- lookup


def get_response(response_id: int) -> Response:
    response = db.session.get(
        Response,
        response_id,
        options=[
            joinedload(Response.opportunity).joinedload(Opportunity.publisher),
            joinedload(Response.organization),
            selectinload(Response.product_rows).joinedload(ResponseProduct.product),
        ],
    )
    if response is None:
        raise NotFound("答题不存在")
    return response


def visible_response(user: User | None, response_id: int) -> Response:
    """The response if ``user`` may see it; otherwise it does not exist for them (404)."""
    response = get_response(response_id)
    require(user, "view", response)
    return response


def live_response(organization_id: int, opportunity_id: int) -> Response | None:
    return db.session.scalar(
        select(Response).where(
            Response.organization_id == organization_id,
            Response.opportunity_id == opportunity_id,
            Response.status != ResponseStatus.WITHDRAWN,
        )
    )


def get_opportunity(opportunity_id: int) -> Opportunity:
    opportunity = db.session.get(Opportunity, opportunity_id, options=[joinedload(Opportunity.publisher)])
    if opportunity is None:
        raise NotFound("需求不存在")
    return opportunity


def published_opportunity(opportunity_id: int) -> Opportunity:
    opportunity = get_opportunity(opportunity_id)
    if opportunity.status != EntryStatus.PUBLISHED:
        raise NotFound("需求不存在或尚未公开")
    return opportunity


# ---------------------------------------------------------------- validation


def _text(data: dict, key: str, label: str, lo: int, hi: int, errors: dict[str, str]) -> str:
    value = (data.get(key) or "").strip()
    if "\x00" in value:
        errors[key] = f"{label}包含无效字符"
    elif len(value) < lo:
        errors[key] = f"{label}至少{lo}个字" if lo > 1 else f"请填写{label}"
    elif len(value) > hi:
        errors[key] = f"{label}不能超过{hi}个字"
    return value


def _quote(value: Any, errors: dict[str, str]) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        errors["quote"] = "报价请输入数字"
        return None
    if not number.is_finite() or number < 0 or number > MAX_QUOTE:
        errors["quote"] = "报价应为不小于0的合理数值（万元）"
        return None
    return number.quantize(Decimal("0.01"))


def product_choices(organization: Organization, consortium: Consortium | None = None) -> list[Product]:
    """Published products that a response may use: the organization's, or a consortium's
    accepted members' (the lead included)."""
    owners = {organization.id}
    if consortium is not None:
        owners |= set(consortium.accepted_organization_ids)
    return list(
        db.session.scalars(
            select(Product)
            .where(Product.owner_id.in_(owners), Product.status == EntryStatus.PUBLISHED)
            .options(joinedload(Product.owner))
            .order_by(Product.owner_id, Product.id)
        )
    )


def clean_response(data: dict, allowed_products: Iterable[Product]) -> dict[str, Any]:
    """Check the fields of a response; raises :class:`ValidationFailed` (field → message)."""
    errors: dict[str, str] = {}
    out: dict[str, Any] = {
        "summary": _text(data, "summary", "方案摘要", MIN_SUMMARY, MAX_SUMMARY, errors),
        "delivery_plan": _text(data, "delivery_plan", "实施计划与周期", 0, MAX_PLAN, errors),
        "contact_name": _text(data, "contact_name", "联系人", 1, 50, errors),
        "contact_phone": _text(data, "contact_phone", "联系电话", 1, 30, errors),
        "quote": _quote(data.get("quote"), errors),
    }
    allowed = {p.id for p in allowed_products}
    ids: list[int] = []
    for raw in data.get("product_ids") or []:
        try:
            ids.append(int(raw))
        except (TypeError, ValueError):
            errors["product_ids"] = "产品选择无效"
            break
    ids = list(dict.fromkeys(ids))
    if "product_ids" not in errors:
        if not ids:
            errors["product_ids"] = "请至少选择一个已发布的产品"
        elif any(i not in allowed for i in ids):
            errors["product_ids"] = "只能选择本单位（或联合体成员）已发布的产品"
    out["product_ids"] = ids
    if errors:
        raise ValidationFailed(errors)
    return out


@dataclass
class Upload:
    """A file from a form: its stream and the name the browser sent."""

    stream: BinaryIO
    filename: str | None


def _apply(response: Response, values: dict[str, Any]) -> None:
    for key in ("summary", "delivery_plan", "contact_name", "contact_phone", "quote"):
        setattr(response, key, values[key])
    response.product_rows = [ResponseProduct(product_id=i) for i in values["product_ids"]]
    response.updated_at = utcnow()


def _replace_attachment(actor: User, response: Response, upload: Upload | None, remove: bool) -> list:
    """Store a new attachment (or drop the old one). Returns stored files to delete after commit."""
    old = response.attachment
    if upload is not None:
        response.attachment = uploads.store(
            upload.stream, upload.filename, ATTACHMENT_POLICY, response.organization_id, actor
        )
    elif remove:
        response.attachment = None
    else:
        return []
    return [old] if old is not None else []


def _clean_with_attachment(
    data: dict, allowed_products: Iterable[Product], attachment: Upload | None
) -> dict:
    """Check the fields and the attachment together, so every problem is reported at once."""
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    try:
        values = clean_response(data, allowed_products)
    except ValidationFailed as exc:
        errors.update(exc.errors)
    if attachment is not None:
        try:
            uploads.check(attachment.stream, attachment.filename, ATTACHMENT_POLICY)
        except ValidationFailed as exc:
            errors.update(exc.errors)
    if errors:
        raise ValidationFailed(errors)
    return values


def _rollback_with_files() -> None:
    """Undo the transaction, including the bytes of files stored in it."""
    new_names = [obj.storage_name for obj in db.session.new if isinstance(obj, StoredFile)]
    db.session.rollback()
    for name in new_names:
        uploads.remove_file(name)


def _commit_with_files(replaced: list) -> None:
    """Commit; on failure remove the bytes of any file stored in this transaction."""
    try:
        db.session.commit()
    except Exception:
        _rollback_with_files()
        raise
    if replaced:
        uploads.delete_committed(replaced)


# ---------------------------------------------------------------- firm actions


def start_response(
    actor: User,
    opportunity: Opportunity,
    data: dict,
    attachment: Upload | None = None,
    consortium: Consortium | None = None,
    submit_now: bool = False,
) -> Response:
    """Create the organization's response to ``opportunity`` (a draft, or submitted at once)."""
    require(actor, "respond", opportunity)
    if consortium is not None:
        if (consortium.opportunity_id != opportunity.id
                or consortium.lead_organization_id != actor.organization_id):
            raise PermissionDenied("只能以本单位牵头的、针对该需求的联合体答题")
    values = _clean_with_attachment(data, product_choices(actor.organization, consortium), attachment)
    response = Response(
        opportunity=opportunity,
        organization_id=actor.organization_id,
        organization=actor.organization,
        consortium=consortium,
        status=ResponseStatus.DRAFT,
        created_by_id=actor.id,
    )
    try:
        _apply(response, values)
        db.session.add(response)
        _replace_attachment(actor, response, attachment, remove=False)
        db.session.flush()
        audit.record(actor, "response.create", response, f"为「{opportunity.title}」起草答题")
        if submit_now:
            _submit(actor, response)
    except Exception:
        _rollback_with_files()
        raise
    _commit_with_files([])
    return response


def update_response(
    actor: User,
    response: Response,
    data: dict,
    attachment: Upload | None = None,
    remove_attachment: bool = False,
    submit_now: bool = False,
) -> Response:
    """Edit a draft, or a submitted response until the deadline."""
    require(actor, "edit", response)
    values = _clean_with_attachment(
        data, product_choices(response.organization, response.consortium), attachment
    )
    try:
        _apply(response, values)
        replaced = _replace_attachment(actor, response, attachment, remove_attachment)
        audit.record(actor, "response.update", response, "修改答题内容")
        if submit_now and response.status == ResponseStatus.DRAFT:
            db.session.flush()
            _submit(actor, response)
    except Exception:
        _rollback_with_files()
        raise
    _commit_with_files(replaced)
    return response


def _respondent_org_ids(response: Response) -> set[int]:
    ids = {response.organization_id}
    ids |= _consortium_member_org_ids(response.consortium, (InvitationStatus.ACCEPTED,))
    return ids


def _response_url(response: Response) -> str:
    return notifications.path_for("responses.detail", id=response.id)


def _submit(actor: User, response: Response) -> None:
    reason = transition_problem(actor, response, "submit")
    if reason is not None:
        raise InvalidTransition(reason)
    response.status = ResponseStatus.SUBMITTED
    response.submitted_at = utcnow()
    audit.record(actor, "response.submit", response, f"提交对「{response.opportunity.title}」的答题")
    notifications.notify_organization(
        response.opportunity.publisher_id,
        notifications.NotificationKind.RESPONSE_NEW,
        f"新的答题：{response.respondent_name}",
        f"「{response.respondent_name}」答复了贵单位发布的需求「{response.opportunity.title}」。",
        _response_url(response),
    )


def transition(actor: User, response: Response, action: str, comment: str = "") -> Response:
    """Perform one step of :data:`TRANSITIONS` (with an optional comment for review steps)."""
    require(actor, action, response)
    step = TRANSITIONS[action]
    comment = (comment or "").strip()
    if "\x00" in comment:
        raise ValidationFailed({"comment": "意见包含无效字符"})
    if len(comment) > MAX_COMMENT:
        raise ValidationFailed({"comment": f"意见不能超过{MAX_COMMENT}个字"})
    if action == "submit":
        _submit(actor, response)
    else:
        was_submitted = response.status != ResponseStatus.DRAFT
        response.status = step.target
        response.updated_at = utcnow()
        if step.who == REVIEWER:
            response.review_comment = comment or None
            response.reviewed_at = utcnow()
            response.reviewed_by_id = actor.id
            body = f"您对「{response.opportunity.title}」的答题状态变为「{response.status_label}」。"
            if comment:
                body += f"意见：{comment}"
            for org_id in sorted(_respondent_org_ids(response)):
                notifications.notify_organization(
                    org_id, notifications.NotificationKind.RESPONSE_STATUS,
                    f"答题{response.status_label}：{response.opportunity.title}", body,
                    _response_url(response),
                )
            if action == "select":
                from marketplace.services import index_sync

                index_sync.bump()  # the public 已揭榜 mark changes
        elif action == "withdraw" and was_submitted:
            notifications.notify_organization(
                response.opportunity.publisher_id, notifications.NotificationKind.RESPONSE_STATUS,
                f"答题已撤回：{response.respondent_name}",
                f"「{response.respondent_name}」撤回了对「{response.opportunity.title}」的答题。",
                _response_url(response),
            )
        summary = f"{step.label}" + (f"：{comment[:200]}" if comment else "")
        audit.record(actor, f"response.{action}", response, summary)
    db.session.commit()
    return response


# ---------------------------------------------------------------- lists


@dataclass
class ResponseRow:
    """One line of the publisher's table: the response and the match score of each product."""

    response: Response
    scores: dict[int, float]

    @property
    def best_score(self) -> float | None:
        return max(self.scores.values()) if self.scores else None


def _load_options():
    return (
        joinedload(Response.organization),
        joinedload(Response.consortium),
        joinedload(Response.attachment),
        selectinload(Response.product_rows).joinedload(ResponseProduct.product),
    )


def responses_for_opportunity(actor: User, opportunity: Opportunity) -> list[ResponseRow]:
    """Every response the publisher may see, with match scores of their products for the need."""
    require(actor, "view_responses", opportunity)
    responses = list(
        db.session.scalars(
            select(Response)
            .where(
                Response.opportunity_id == opportunity.id,
                Response.status.in_(VISIBLE_TO_REVIEWERS),
                Response.submitted_at.is_not(None),
            )
            .options(*_load_options())
            .order_by(Response.submitted_at.desc(), Response.id.desc())
        ).unique()
    )
    scores = product_scores(opportunity, {pid for r in responses for pid in r.product_ids})
    return [
        ResponseRow(r, {pid: scores[pid] for pid in r.product_ids if pid in scores}) for r in responses
    ]


def product_scores(opportunity: Opportunity, product_ids: set[int]) -> dict[int, float]:
    """The engine's score of each (published) product for the need."""
    if not product_ids:
        return {}
    from marketplace.services import matching
    from matching import Filters

    results = matching.get_service().products_for_opportunity(
        opportunity, min(len(product_ids), matching.MAX_K), Filters(allowed_ids=frozenset(product_ids))
    )
    return {r.entry.id: r.hit.score for r in results}


def my_responses(actor: User) -> list[Response]:
    """The responses of the actor's organization (as respondent or accepted consortium member)."""
    if actor.organization_id is None:
        raise PermissionDenied("只有单位用户有「我的答题」")
    member_consortia = select(ConsortiumMember.consortium_id).where(
        ConsortiumMember.organization_id == actor.organization_id,
        ConsortiumMember.status == InvitationStatus.ACCEPTED,
    )
    return list(
        db.session.scalars(
            select(Response)
            .where(
                or_(
                    Response.organization_id == actor.organization_id,
                    Response.consortium_id.in_(member_consortia)
                    & (Response.status != ResponseStatus.DRAFT),
                )
            )
            .options(*_load_options(), joinedload(Response.opportunity).joinedload(Opportunity.publisher))
            .order_by(Response.updated_at.desc(), Response.id.desc())
        ).unique()
    )


def response_counts(opportunity_ids: Iterable[int]) -> dict[int, int]:
    """Submitted (non-draft, not withdrawn) responses per need, for the publisher's lists."""
    ids = list(opportunity_ids)
    if not ids:
        return {}
    return dict(
        db.session.execute(
            select(Response.opportunity_id, func.count())
            .where(
                Response.opportunity_id.in_(ids),
                Response.status.in_(VISIBLE_TO_REVIEWERS - {ResponseStatus.WITHDRAWN}),
            )
            .group_by(Response.opportunity_id)
        ).all()
    )


def winners(opportunity_ids: Iterable[int]) -> dict[int, list[str]]:
    """Public 已揭榜 names: the selected respondents of each need (published needs only)."""
    ids = list(opportunity_ids)
    if not ids:
        return {}
    out: dict[int, list[str]] = {}
    rows = db.session.execute(
        select(Response.opportunity_id, Organization.name, Consortium.name)
        .join(Organization, Organization.id == Response.organization_id)
        .join(Opportunity, Opportunity.id == Response.opportunity_id)
        .outerjoin(Consortium, Consortium.id == Response.consortium_id)
        .where(
            Response.opportunity_id.in_(ids),
            Response.status == ResponseStatus.SELECTED,
            Opportunity.status == EntryStatus.PUBLISHED,
        )
        .order_by(Response.reviewed_at, Response.id)
    )
    for opportunity_id, org_name, consortium_name in rows:
        label = f"{consortium_name}（牵头：{org_name}）" if consortium_name else org_name
        out.setdefault(opportunity_id, []).append(label)
    return out


def history(response: Response) -> list:
    """The audit events of a response, oldest first (its timeline)."""
    return list(reversed(db.session.scalars(audit.audit_query("response", response.id)).all()))


# ---------------------------------------------------------------- consortia


def is_lead(user: User | None, consortium: Consortium) -> bool:
    return _member_of(user, consortium.lead_organization_id)


def get_consortium(consortium_id: int) -> Consortium:
    consortium = db.session.get(
        Consortium,
        consortium_id,
        options=[
            joinedload(Consortium.opportunity),
            joinedload(Consortium.lead),
            selectinload(Consortium.members).joinedload(ConsortiumMember.organization),
        ],
    )
    if consortium is None:
        raise NotFound("联合体不存在")
    return consortium


def visible_consortium(user: User | None, consortium_id: int) -> Consortium:
    consortium = get_consortium(consortium_id)
    require(user, "view", consortium)
    return consortium


def can_view_consortium(user: User | None, consortium: Consortium) -> bool:
    if _is_staff(user):
        return True
    if user is None or not user.is_authenticated or user.organization_id is None:
        return False
    if user.organization_id in {m.organization_id for m in consortium.members}:
        return True
    # The publisher sees a consortium once it has answered the need.
    return is_publisher(user, consortium.opportunity) and any(
        r.submitted_at is not None for r in consortium.responses
    )


def consortium_response(consortium: Consortium) -> Response | None:
    return next((r for r in consortium.responses if r.status != ResponseStatus.WITHDRAWN), None)


def consortium_change_problem(user: User | None, consortium: Consortium) -> str | None:
    if not _member_of(user, consortium.lead_organization_id):
        return "只有牵头单位可以管理联合体成员"
    response = consortium_response(consortium)
    if response is not None and response.status != ResponseStatus.DRAFT:
        return "联合体已提交答题，成员不能再变动"
    if consortium.opportunity.status != EntryStatus.PUBLISHED or timeutil.deadline_passed(
        consortium.opportunity.deadline
    ):
        return "该需求已截止或已不公开，联合体成员不能再变动"
    return None


def answer_problem(user: User | None, member: ConsortiumMember) -> str | None:
    if not _member_of(user, member.organization_id):
        return "只有受邀单位可以答复邀请"
    if member.status != InvitationStatus.INVITED:
        return f"该邀请已{member.status_label}"
    response = consortium_response(member.consortium)
    if response is not None and response.status != ResponseStatus.DRAFT:
        return "联合体已提交答题"
    return None


def create_consortium(actor: User, opportunity: Opportunity, name: str) -> Consortium:
    """The actor's organization leads a new consortium for ``opportunity``."""
    require(actor, "form_consortium", opportunity)
    name = (name or "").strip()
    if len(name) < 2 or len(name) > 100 or "\x00" in name:
        raise ValidationFailed({"name": "联合体名称应为2到100个字"})
    existing = db.session.scalar(
        select(Consortium).where(
            Consortium.opportunity_id == opportunity.id,
            Consortium.lead_organization_id == actor.organization_id,
        )
    )
    if existing is not None:
        raise DomainError("本单位已为该需求牵头组建联合体")
    consortium = Consortium(
        opportunity=opportunity, lead_organization_id=actor.organization_id, name=name,
        created_by_id=actor.id,
    )
    consortium.members.append(
        ConsortiumMember(
            organization_id=actor.organization_id, role=ConsortiumRole.LEAD,
            status=InvitationStatus.ACCEPTED, invited_by_id=actor.id, answered_by_id=actor.id,
            answered_at=utcnow(),
        )
    )
    db.session.add(consortium)
    db.session.flush()
    audit.record(actor, "consortium.create", consortium, f"牵头组建「{name}」，答复「{opportunity.title}」")
    db.session.commit()
    return consortium


def find_organization(query: str) -> Organization | None:
    """An organization by exact name or 统一社会信用代码."""
    query = (query or "").strip()
    if not query or "\x00" in query:
        return None
    return db.session.scalar(
        select(Organization).where(or_(Organization.name == query, Organization.credit_code == query.upper()))
    )


def invite(
    actor: User, consortium: Consortium, organization_query: str, role: str, note: str = ""
) -> ConsortiumMember:
    """Invite a verified organization (found by exact name or credit code) with a role."""
    require(actor, "invite", consortium)
    errors: dict[str, str] = {}
    if role not in {r.value for r in ConsortiumRole} or role == ConsortiumRole.LEAD:
        errors["role"] = "请选择有效的成员角色"
    note = (note or "").strip()
    if len(note) > 200 or "\x00" in note:
        errors["note"] = "说明不能超过200个字"
    organization = find_organization(organization_query)
    if organization is None:
        errors["organization"] = "未找到该单位，请输入完整的单位名称或统一社会信用代码"
    elif not organization.verified:
        errors["organization"] = "该单位尚未通过组织方认证，不能邀请"
    elif any(m.organization_id == organization.id for m in consortium.members):
        errors["organization"] = "该单位已在联合体中或已被邀请"
    elif len(consortium.members) >= MAX_CONSORTIUM_MEMBERS:
        errors["organization"] = f"联合体成员最多{MAX_CONSORTIUM_MEMBERS}家"
    if errors:
        raise ValidationFailed(errors)
    member = ConsortiumMember(
        organization_id=organization.id, organization=organization, role=role, note=note,
        status=InvitationStatus.INVITED, invited_by_id=actor.id,
    )
    consortium.members.append(member)
    db.session.flush()
    audit.record(actor, "consortium.invite", consortium,
                 f"邀请「{organization.name}」作为{member.role_label}")
    notifications.notify_organization(
        organization.id, notifications.NotificationKind.CONSORTIUM_INVITE,
        f"联合体邀请：{consortium.name}",
        f"「{consortium.lead.name}」邀请贵单位作为{member.role_label}加入「{consortium.name}」，"
        f"共同答复需求「{consortium.opportunity.title}」。",
        notifications.path_for("responses.consortium", id=consortium.id),
    )
    db.session.commit()
    return member


def get_member(member_id: int) -> ConsortiumMember:
    member = db.session.get(ConsortiumMember, member_id)
    if member is None:
        raise NotFound("邀请不存在")
    return member


def revoke(actor: User, member: ConsortiumMember) -> None:
    """The lead withdraws a pending invitation (or drops a member who declined)."""
    consortium = member.consortium
    require(actor, "revoke", consortium)
    if member.role == ConsortiumRole.LEAD:
        raise InvalidTransition("牵头单位不能移出联合体")
    if member.status == InvitationStatus.ACCEPTED:
        raise InvalidTransition("已接受邀请的成员不能移出")
    name = member.organization.name
    consortium.members.remove(member)
    audit.record(actor, "consortium.revoke", consortium, f"撤销对「{name}」的邀请")
    db.session.commit()


def answer(actor: User, member: ConsortiumMember, accept: bool) -> None:
    """The invited organization accepts or declines."""
    require(actor, "answer", member)
    member.status = InvitationStatus.ACCEPTED if accept else InvitationStatus.DECLINED
    member.answered_at = utcnow()
    member.answered_by_id = actor.id
    consortium = member.consortium
    verb = "接受" if accept else "谢绝"
    audit.record(actor, f"consortium.{'accept' if accept else 'decline'}", consortium,
                 f"「{member.organization.name}」{verb}邀请")
    notifications.notify_organization(
        consortium.lead_organization_id, notifications.NotificationKind.CONSORTIUM_ANSWER,
        f"联合体邀请已{verb}：{member.organization.name}",
        f"「{member.organization.name}」{verb}了加入「{consortium.name}」的邀请。",
        notifications.path_for("responses.consortium", id=consortium.id),
    )
    db.session.commit()


def my_consortia(actor: User) -> list[Consortium]:
    """Consortia the actor's organization leads or was invited to."""
    if actor.organization_id is None:
        return []
    ids = select(ConsortiumMember.consortium_id).where(
        ConsortiumMember.organization_id == actor.organization_id
    )
    return list(
        db.session.scalars(
            select(Consortium)
            .where(Consortium.id.in_(ids))
            .options(
                joinedload(Consortium.opportunity),
                joinedload(Consortium.lead),
                selectinload(Consortium.members).joinedload(ConsortiumMember.organization),
                selectinload(Consortium.responses),
            )
            .order_by(Consortium.created_at.desc(), Consortium.id.desc())
        ).unique()
    )


def led_consortium(actor: User, opportunity: Opportunity) -> Consortium | None:
    if actor is None or not actor.is_authenticated or actor.organization_id is None:
        return None
    return db.session.scalar(
        select(Consortium).where(
            Consortium.opportunity_id == opportunity.id,
            Consortium.lead_organization_id == actor.organization_id,
        )
    )


@dataclass
class OpportunityPanel:
    """What a need's public page shows about answering it, for one viewer."""

    winners: list[str]
    respond_problem: str | None
    own_response: Response | None
    consortium: Consortium | None
    #: Submitted responses, only for the publisher and organizers (None for everyone else).
    response_count: int | None


def opportunity_panel(user: User | None, opportunity: Opportunity) -> OpportunityPanel:
    own = None
    if user is not None and user.is_authenticated and user.organization_id is not None:
        own = live_response(user.organization_id, opportunity.id)
    count = None
    if can(user, "view_responses", opportunity):
        count = response_counts([opportunity.id]).get(opportunity.id, 0)
    return OpportunityPanel(
        winners=winners([opportunity.id]).get(opportunity.id, []),
        respond_problem=respond_problem(user, opportunity),
        own_response=own,
        consortium=led_consortium(user, opportunity),
        response_count=count,
    )
