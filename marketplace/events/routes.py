"""活动 pages for every role.

* Public: ``/events/`` (upcoming first, then past) and ``/events/<id>`` for published events.
* Firms: register (报名) and cancel; ``/events/mine`` lists their registrations and invitations,
  and ``/events/invitations/<id>`` answers one (确认参加 / 婉拒 with a reason).
* Organizers: create and edit events, feature needs, confirm or decline registrations, open and
  curate shortlists (对接名单) and send invitations.
* The need's publisher: its shortlists read-only, marking the firms it wants to meet.
* 1:1 meetings (对接洽谈): organizers set the plan, run 自动排程, move / swap / remove / add
  meetings on the grid and mark them held or no-show; every participant prints its own agenda
  (organizers print all, and one per table).
* Exports for organizers: the XLSX workbook, the registrations CSV and the printable 对接名单.

Every decision is the domain's permission function (:func:`services.events.require`).
"""

from __future__ import annotations

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from marketplace.auth.forms import EmptyForm
from marketplace.events import bp
from marketplace.events.forms import (
    AddBatchForm,
    AddFirmForm,
    AddMeetingForm,
    AddNeedForm,
    AddProductForm,
    AnswerForm,
    EntryNoteForm,
    EventForm,
    InviteForm,
    MeetingPlanForm,
    MoveForm,
    PlaceForm,
    ReasonForm,
    RegistrationForm,
    ShortlistSettingsForm,
    SwapForm,
)
from marketplace.extensions import login_manager
from marketplace.models import Event
from marketplace.services import event_exports as exports
from marketplace.services import events as service
from marketplace.services import meetings as meeting_service
from marketplace.services import shortlists
from marketplace.services.errors import DomainError, ValidationFailed

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@bp.app_context_processor
def event_globals():
    """Functions for other domains' templates, queried only where a template calls them:
    ``upcoming_events()`` (the portal's home page) and ``pending_invitation_count(user)``
    (「我的答题」)."""
    return {"upcoming_events": service.upcoming_events,
            "pending_invitation_count": service.pending_invitation_count}


def _login_first():
    """Anonymous visitors go to the login page; a POST cannot be replayed after login."""
    if current_user.is_authenticated:
        return None
    if request.method == "GET":
        return login_manager.unauthorized()
    flash(login_manager.login_message, login_manager.login_message_category)
    return redirect(url_for("auth.login"))


PUBLIC_ENDPOINTS = {"events.index", "events.detail"}


@bp.before_request
def require_login():
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    return _login_first()


def _invalid_post(form) -> None:
    """A one-button POST whose form did not validate: a missing CSRF token is a 400."""
    if not form.validate_on_submit():
        if "csrf_token" in form.errors or not form.errors:
            abort(400)


def _flash_or_raise(exc: DomainError) -> None:
    """A refusal the user may see on the page they came from; 403/404 stay error pages."""
    if exc.status_code in (403, 404):
        raise exc
    flash(exc.message, "danger")


def _first_error(form) -> str:
    for errors in form.errors.values():
        if errors:
            return errors[0]
    return "提交的内容有误"


# ---------------------------------------------------------------- public pages


@bp.get("/")
def index():
    upcoming, past = service.public_events()
    return render_template("events/index.html", upcoming=upcoming, past=past,
                           is_staff=service.is_staff(current_user))


@bp.get("/<int:id>")
def detail(id: int):
    event = service.visible_event(current_user, id)
    registration = None
    if current_user.is_authenticated and current_user.organization_id is not None:
        registration = service.registration_of(current_user.organization_id, event.id)
    return render_template(
        "events/detail.html",
        event=event,
        needs=service.public_needs(event),
        registration=registration,
        register_problem=service.register_problem(current_user, event),
        registration_actions=(service.allowed_registration_actions(current_user, registration)
                              if registration else []),
        can_manage=service.can(current_user, "manage", event),
        visible_shortlists={
            need_id: sl for need_id, sl in service.shortlists_of(event).items()
            if service.can(current_user, "view", sl)
        } if current_user.is_authenticated else {},
    )


# ---------------------------------------------------------------- organizers: events


@bp.get("/manage")
def manage_list():
    return render_template("events/manage_list.html", events=service.all_events(current_user))


@bp.route("/new", methods=["GET", "POST"])
def new():
    service.require(current_user, "create", Event)
    form = EventForm()
    if form.validate_on_submit():
        try:
            event = service.create_event(current_user, form.event_data())
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        else:
            flash("活动已创建（筹备中）。请添加展示的需求，准备好后发布。", "success")
            return redirect(url_for("events.manage", id=event.id))
    status = 200 if request.method == "GET" or not form.errors else 400
    return render_template("events/form.html", form=form, event=None), status


@bp.route("/<int:id>/edit", methods=["GET", "POST"])
def edit(id: int):
    event = service.visible_event(current_user, id)
    service.require(current_user, "edit", event)
    form = EventForm(data=service.form_values(event)) if request.method == "GET" else EventForm()
    if form.validate_on_submit():
        try:
            service.update_event(current_user, event, form.event_data())
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        else:
            flash("活动信息已保存。", "success")
            return redirect(url_for("events.manage", id=event.id))
    status = 200 if request.method == "GET" or not form.errors else 400
    return render_template("events/form.html", form=form, event=event), status


@bp.get("/<int:id>/manage")
def manage(id: int):
    event = service.visible_event(current_user, id)
    service.require(current_user, "manage", event)
    query = (request.args.get("q") or "").strip()[:100]
    batch_form = AddBatchForm()
    batch_form.set_batches(service.opportunity_batches())
    registrations = service.registrations_of(event)
    return render_template(
        "events/manage.html",
        event=event,
        query=query,
        found=service.search_needs(event, query) if query else [],
        batch_form=batch_form,
        registrations=registrations,
        registration_actions={
            r.id: service.allowed_registration_actions(current_user, r) for r in registrations
        },
        shortlists=service.shortlists_of(event),
        actions=service.allowed_event_actions(current_user, event),
        can_edit=service.can(current_user, "edit", event),
        history=service.history(event),
        reason_form=ReasonForm(),
    )


@bp.post("/<int:id>/<any(open, finish, cancel):action>")
def act(id: int, action: str):
    event = service.visible_event(current_user, id)
    form = ReasonForm()
    _invalid_post(form)
    if form.errors:
        flash(_first_error(form), "danger")
        return redirect(url_for("events.manage", id=event.id))
    try:
        service.transition_event(current_user, event, action, form.reason.data or "")
    except DomainError as exc:
        _flash_or_raise(exc)
    else:
        flash(service.EVENT_TRANSITIONS[action].done, "success")
    return redirect(url_for("events.manage", id=event.id))


@bp.post("/<int:id>/needs/add")
def add_need(id: int):
    event = service.visible_event(current_user, id)
    service.require(current_user, "edit", event)
    form = AddNeedForm()
    _invalid_post(form)
    if form.errors:
        flash(_first_error(form), "danger")
    else:
        try:
            opportunity = service.add_need(current_user, event, form.opportunity_id.data)
        except ValidationFailed as exc:
            flash(exc.message, "danger")
        else:
            flash(f"已加入需求「{opportunity.title}」。", "success")
    return redirect(url_for("events.manage", id=event.id, q=request.form.get("q") or None))


@bp.post("/<int:id>/needs/batch")
def add_batch(id: int):
    event = service.visible_event(current_user, id)
    service.require(current_user, "edit", event)
    form = AddBatchForm()
    form.set_batches(service.opportunity_batches())
    _invalid_post(form)
    if form.errors:
        flash(_first_error(form), "danger")
    else:
        try:
            count = service.add_batch(current_user, event, form.batch_id.data)
        except ValidationFailed as exc:
            flash(exc.message, "danger")
        else:
            flash(f"已按批次加入 {count} 项需求。" if count else "该批次的需求均已在本活动中。", "success")
    return redirect(url_for("events.manage", id=event.id))


@bp.post("/<int:id>/needs/<int:opportunity_id>/remove")
def remove_need(id: int, opportunity_id: int):
    event = service.visible_event(current_user, id)
    _invalid_post(EmptyForm())
    try:
        service.remove_need(current_user, event, opportunity_id)
    except DomainError as exc:
        _flash_or_raise(exc)
    else:
        flash("已移除该需求。", "success")
    return redirect(url_for("events.manage", id=event.id))


@bp.post("/<int:id>/needs/<int:opportunity_id>/shortlist")
def open_shortlist(id: int, opportunity_id: int):
    event = service.visible_event(current_user, id)
    _invalid_post(EmptyForm())
    shortlist = shortlists.open_shortlist(current_user, event, opportunity_id)
    return redirect(url_for("events.shortlist", id=shortlist.id))


# ---------------------------------------------------------------- registrations


@bp.route("/<int:id>/register", methods=["GET", "POST"])
def register(id: int):
    event = service.visible_event(current_user, id)
    service.require(current_user, "register", event)
    form = RegistrationForm()
    form.set_products(service.product_choices(current_user.organization))
    if form.validate_on_submit():
        try:
            service.register(current_user, event, form.note.data or "", form.product_ids.data or [])
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        else:
            flash("报名已提交，组织方确认后将通知贵单位。", "success")
            return redirect(url_for("events.detail", id=event.id))
    status = 200 if request.method == "GET" or not form.errors else 400
    return render_template("events/register.html", form=form, event=event), status


@bp.post("/registrations/<int:id>/<any(confirm, decline, cancel):action>")
def registration_action(id: int, action: str):
    registration = service.visible_registration(current_user, id)
    form = ReasonForm()
    _invalid_post(form)
    back = (url_for("events.manage", id=registration.event_id) if service.is_staff(current_user)
            else url_for("events.mine"))
    if form.errors:
        flash(_first_error(form), "danger")
        return redirect(back)
    try:
        service.transition_registration(current_user, registration, action, form.reason.data or "")
    except DomainError as exc:
        _flash_or_raise(exc)
    else:
        flash(service.REGISTRATION_TRANSITIONS[action].done, "success")
    return redirect(back)


# ---------------------------------------------------------------- firms


@bp.get("/mine")
def mine():
    if current_user.organization_id is None:
        abort(403)
    invitations = service.my_invitations(current_user)
    registrations = service.my_registrations(current_user)
    return render_template(
        "events/mine.html",
        registrations=registrations,
        invitations=invitations,
        actions={e.id: service.allowed_invitation_actions(current_user, e) for e in invitations},
        registration_actions={
            r.id: service.allowed_registration_actions(current_user, r) for r in registrations
        },
        publisher_shortlists=service.publisher_shortlists(current_user),
        agendas=meeting_service.my_agendas(current_user),
    )


def _render_invitation(entry, form: AnswerForm, status: int = 200):
    shortlist = entry.shortlist
    return render_template(
        "events/invitation.html",
        entry=entry,
        shortlist=shortlist,
        event=shortlist.event,
        products=[row for row in shortlists.rows(shortlist) if row.entry.id == entry.id][0].products,
        actions=service.allowed_invitation_actions(current_user, entry),
        form=form,
    ), status


@bp.get("/invitations/<int:id>")
def invitation(id: int):
    entry = shortlists.get_entry(id)
    service.require(current_user, "view_invitation", entry)
    return _render_invitation(entry, AnswerForm())


@bp.post("/invitations/<int:id>/<any(confirm, decline):action>")
def answer(id: int, action: str):
    entry = shortlists.get_entry(id)
    service.require(current_user, "view_invitation", entry)
    form = AnswerForm()
    if not form.validate_on_submit():
        if "csrf_token" in form.errors:
            abort(400)
        return _render_invitation(entry, form, 400)
    try:
        shortlists.answer(current_user, entry, action, form.reason.data or "", form.detail.data or "")
    except ValidationFailed as exc:
        form.attach_errors(exc.errors)
        return _render_invitation(entry, form, 400)
    flash(service.INVITATION_TRANSITIONS[action].done, "success")
    return redirect(url_for("events.invitation", id=entry.id))


# ---------------------------------------------------------------- shortlists


def _render_shortlist(shortlist, status: int = 200, **forms):
    can_manage = service.can(current_user, "manage", shortlist)
    rows = shortlists.rows(shortlist)
    invite_form = forms.get("invite_form") or InviteForm()
    return render_template(
        "events/shortlist.html",
        shortlist=shortlist,
        event=shortlist.event,
        opportunity=shortlist.opportunity,
        rows=rows,
        can_manage=can_manage,
        is_publisher=service.is_publisher(current_user, shortlist),
        can_request={r.entry.id: service.can(current_user, "request", r.entry) for r in rows},
        can_invite=can_manage and shortlist.event.status == "open",
        settings_form=forms.get("settings_form") or ShortlistSettingsForm(obj=shortlist),
        firm_form=forms.get("firm_form") or AddFirmForm(),
        product_form=forms.get("product_form") or AddProductForm(),
        invite_form=invite_form,
        firm_names=shortlists.firm_names() if can_manage else [],
        decisions=shortlists.decisions(shortlist) if can_manage or service.is_staff(current_user) else [],
    ), status


@bp.get("/shortlists/<int:id>")
def shortlist(id: int):
    return _render_shortlist(shortlists.visible_shortlist(current_user, id))


@bp.post("/shortlists/<int:id>/settings")
def shortlist_settings(id: int):
    shortlist = shortlists.visible_shortlist(current_user, id)
    service.require(current_user, "manage", shortlist)
    form = ShortlistSettingsForm()
    if form.validate_on_submit():
        try:
            shortlists.update_settings(current_user, shortlist, form.target_size.data, form.note.data or "")
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        else:
            flash("名单设置已保存。", "success")
            return redirect(url_for("events.shortlist", id=shortlist.id))
    elif "csrf_token" in form.errors:
        abort(400)
    return _render_shortlist(shortlist, 400, settings_form=form)


@bp.post("/shortlists/<int:id>/add-firm")
def shortlist_add_firm(id: int):
    shortlist = shortlists.visible_shortlist(current_user, id)
    service.require(current_user, "manage", shortlist)
    form = AddFirmForm()
    if form.validate_on_submit():
        try:
            entry = shortlists.add_firm(
                current_user, shortlist, form.organization.data, form.reason.data or ""
            )
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        else:
            flash(f"已将「{entry.organization.name}」加入名单。", "success")
            return redirect(url_for("events.shortlist", id=shortlist.id, _anchor=f"entry-{entry.id}"))
    elif "csrf_token" in form.errors:
        abort(400)
    return _render_shortlist(shortlist, 400, firm_form=form)


@bp.post("/shortlists/<int:id>/add-product")
def shortlist_add_product(id: int):
    shortlist = shortlists.visible_shortlist(current_user, id)
    service.require(current_user, "manage", shortlist)
    form = AddProductForm()
    if form.validate_on_submit():
        try:
            entry = shortlists.add_product(current_user, shortlist, form.product.data)
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        else:
            flash(f"已将产品加入「{entry.organization.name}」名下。", "success")
            return redirect(url_for("events.shortlist", id=shortlist.id, _anchor=f"entry-{entry.id}"))
    elif "csrf_token" in form.errors:
        abort(400)
    return _render_shortlist(shortlist, 400, product_form=form)


@bp.post("/shortlists/<int:id>/invite")
def shortlist_invite(id: int):
    shortlist = shortlists.visible_shortlist(current_user, id)
    service.require(current_user, "manage", shortlist)
    form = InviteForm()
    form.set_entries(shortlist.entries)
    _invalid_post(form)
    if form.errors:
        flash(_first_error(form), "danger")
        return redirect(url_for("events.shortlist", id=shortlist.id))
    try:
        chosen = shortlists.invite(current_user, shortlist, form.entry_ids.data or None)
    except DomainError as exc:
        _flash_or_raise(exc)
    else:
        flash(f"已向 {len(chosen)} 家企业发出邀请。", "success")
    return redirect(url_for("events.shortlist", id=shortlist.id))


ENTRY_ACTIONS = "remove, up, down, pin, unpin, note, move, request, unrequest"


@bp.post(f"/shortlists/entries/<int:id>/<any({ENTRY_ACTIONS}):action>")
def entry_action(id: int, action: str):
    entry = shortlists.get_entry(id)
    shortlist = shortlists.visible_shortlist(current_user, entry.shortlist_id)
    form = {"note": EntryNoteForm, "move": MoveForm, "remove": ReasonForm}.get(action, EmptyForm)()
    _invalid_post(form)
    if form.errors:
        flash(_first_error(form), "danger")
        return redirect(url_for("events.shortlist", id=shortlist.id))
    try:
        if action == "remove":
            shortlists.remove(current_user, entry, form.reason.data or "")
        elif action in ("up", "down"):
            shortlists.step(current_user, entry, action)
        elif action in ("pin", "unpin"):
            shortlists.set_pinned(current_user, entry, action == "pin")
        elif action == "note":
            shortlists.set_note(current_user, entry, form.note.data or "")
        elif action == "move":
            shortlists.move(current_user, entry, form.to_rank.data)
        else:
            shortlists.set_requested(current_user, entry, action == "request")
    except DomainError as exc:
        _flash_or_raise(exc)
    anchor = None if action == "remove" else f"entry-{entry.id}"
    return redirect(url_for("events.shortlist", id=shortlist.id, _anchor=anchor))


# ---------------------------------------------------------------- 1:1 meetings (对接洽谈)


def _schedule_url(event_id: int, **args) -> str:
    return url_for("events.meetings", id=event_id, **args)


@bp.route("/<int:id>/meetings/plan", methods=["GET", "POST"])
def meeting_plan(id: int):
    event = service.visible_event(current_user, id)
    service.require(current_user, "schedule", event)
    form = MeetingPlanForm(data=meeting_service.form_values(event)) if request.method == "GET" \
        else MeetingPlanForm()
    status = 200
    if form.validate_on_submit():
        try:
            meeting_service.save_plan(current_user, event, form.plan_data())
        except ValidationFailed as exc:
            form.attach_plan_errors(exc.errors)
            status = 400
        else:
            flash("洽谈安排已保存。", "success")
            return redirect(_schedule_url(event.id))
    elif request.method == "POST":
        if "csrf_token" in form.errors:
            abort(400)
        status = 400
    return render_template("events/meeting_plan.html", form=form, event=event), status


def _render_meetings(event, status: int = 200, add_form: AddMeetingForm | None = None):
    rows = meeting_service.meetings_of(event)
    grid = meeting_service.grid(event, rows)
    selected = None
    raw = request.args.get("selected", "")
    if raw.isdigit() and len(raw) < 10:
        selected = next((m for m in rows if m.id == int(raw)), None)
    if add_form is None:
        add_form = AddMeetingForm(formdata=None, data={
            "slot": request.args.get("slot", "")[:40], "table": request.args.get("table", type=int),
        })
    can_edit = service.can(current_user, "schedule", event)
    return render_template(
        "events/meetings.html",
        event=event,
        plan=meeting_service.plan_of(event),
        grid=grid,
        meetings=rows,
        selected=selected,
        needs=meeting_service.by_need(event, rows),
        conflicts=meeting_service.conflicts(event, rows) if grid else [],
        confirmed_count=len(meeting_service.confirmed(event)),
        can_edit=can_edit,
        can_edit_meeting={m.id: service.can(current_user, "edit", m) for m in rows},
        mark_actions={m.id: service.allowed_meeting_actions(current_user, m) for m in rows},
        addable=meeting_service.addable(event) if can_edit and grid else [],
        add_form=add_form,
        is_fixed=meeting_service.is_fixed,
        slot_key=meeting_service.slot_key,
    ), status


@bp.get("/<int:id>/meetings")
def meetings(id: int):
    event = service.visible_event(current_user, id)
    service.require(current_user, "view_schedule", event)
    return _render_meetings(event)


@bp.post("/<int:id>/meetings/auto")
def meetings_auto(id: int):
    event = service.visible_event(current_user, id)
    service.require(current_user, "schedule", event)
    _invalid_post(EmptyForm())
    try:
        result = meeting_service.auto_schedule(current_user, event)
    except DomainError as exc:
        _flash_or_raise(exc)
    else:
        flash(result.summary(), "success" if not result.unplaced else "warning")
    return redirect(_schedule_url(event.id))


@bp.post("/<int:id>/meetings/add")
def meetings_add(id: int):
    event = service.visible_event(current_user, id)
    service.require(current_user, "schedule", event)
    form = AddMeetingForm()
    if form.validate_on_submit():
        try:
            meeting = meeting_service.add(current_user, event, form.entry_id.data, form.slot.data,
                                          form.table.data, form.note.data or "")
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        except meeting_service.MeetingConflict as exc:
            form.form_errors.extend(exc.messages)
            return _render_meetings(event, exc.status_code, form)
        except DomainError as exc:
            _flash_or_raise(exc)
            return _render_meetings(event, exc.status_code, form)
        else:
            names = f"「{meeting.organization.name}」与「{meeting.opportunity.title}」"
            flash(f"已安排{names}的洽谈。", "success")
            return redirect(_schedule_url(event.id, _anchor="grid"))
    elif "csrf_token" in form.errors:
        abort(400)
    return _render_meetings(event, 400, form)


@bp.post("/meetings/<int:id>/<any(move, swap, remove):action>")
def meeting_edit(id: int, action: str):
    meeting = meeting_service.get_meeting(id)
    event = service.visible_event(current_user, meeting.event_id)
    service.require(current_user, "view_schedule", event)
    form = {"move": PlaceForm, "swap": SwapForm}.get(action, EmptyForm)()
    _invalid_post(form)
    back = _schedule_url(event.id, _anchor="grid")
    if form.errors:
        flash(_first_error(form), "danger")
        return redirect(_schedule_url(event.id, selected=meeting.id, _anchor="grid"))
    try:
        if action == "move":
            meeting_service.move(current_user, meeting, form.slot.data, form.table.data)
            flash("已调整洽谈时段和桌号。", "success")
        elif action == "swap":
            meeting_service.swap(current_user, meeting, form.other.data)
            flash("已交换两场洽谈的时段和桌号。", "success")
        else:
            meeting_service.remove(current_user, meeting)
            flash("已移除该场洽谈。", "success")
    except DomainError as exc:
        _flash_or_raise(exc)
        if action != "remove":
            back = _schedule_url(event.id, selected=meeting.id, _anchor="grid")
    return redirect(back)


@bp.post("/meetings/<int:id>/<any(hold, no_show):action>")
def meeting_mark(id: int, action: str):
    meeting = meeting_service.get_meeting(id)
    event = service.visible_event(current_user, meeting.event_id)
    service.require(current_user, "view_schedule", event)
    _invalid_post(EmptyForm())
    try:
        meeting_service.mark(current_user, meeting, action)
    except DomainError as exc:
        _flash_or_raise(exc)
    else:
        flash(service.MEETING_TRANSITIONS[action].done, "success")
    return redirect(_schedule_url(event.id, _anchor=f"need-{meeting.opportunity_id}"))


# ---------------------------------------------------------------- agendas (printable)


@bp.get("/<int:id>/agendas")
def agendas(id: int):
    event = service.visible_event(current_user, id)
    service.require(current_user, "view_schedule", event)
    return render_template("events/agenda.html", event=event, agendas=meeting_service.agendas(event),
                           plan=meeting_service.plan_of(event), single=False)


@bp.get("/<int:id>/agendas/<int:organization_id>")
def agenda(id: int, organization_id: int):
    event = service.visible_event(current_user, id)
    agenda_ = meeting_service.agenda_for(current_user, event, organization_id)
    return render_template("events/agenda.html", event=event, agendas=[agenda_],
                           plan=meeting_service.plan_of(event), single=True)


@bp.get("/<int:id>/agendas/tables")
def table_agendas(id: int):
    event = service.visible_event(current_user, id)
    service.require(current_user, "view_tables", event)
    return render_template("events/agenda_tables.html", event=event, tables=meeting_service.by_table(event))


# ---------------------------------------------------------------- exports (organizers)


def _download(body: bytes, mimetype: str, name: str) -> Response:
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/<int:id>/export.xlsx")
def export_xlsx(id: int):
    event = service.visible_event(current_user, id)
    service.require(current_user, "export", event)
    return _download(exports.workbook(event), XLSX, exports.filename(event, "shortlists", "xlsx"))


@bp.get("/<int:id>/registrations.csv")
def export_registrations(id: int):
    event = service.visible_event(current_user, id)
    service.require(current_user, "export", event)
    return _download(exports.registrations_csv(event), "text/csv; charset=utf-8",
                     exports.filename(event, "registrations", "csv"))


@bp.get("/<int:id>/binder")
def binder(id: int):
    event = service.visible_event(current_user, id)
    service.require(current_user, "export", event)
    return render_template("events/binder.html", event=event, lists=exports.need_lists(event))
