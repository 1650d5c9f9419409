"""Matching pages (login required).

* ``/matching/opportunities/<id>``: candidate products for a need, for its publisher and organizers.
* ``/matching/products/<id>``: 「适合我的机会」 for a product, for its firm and organizers.
* ``/matching/search``: organizers' free-text search 「找能做……的企业」.

Results only ever contain published entries; the service enforces who may see which page.
"""

from __future__ import annotations

from flask import flash, render_template, request
from flask_login import current_user

from marketplace.extensions import login_manager
from marketplace.matching_views import bp
from marketplace.matching_views.forms import MatchSearchForm, OpportunityFilterForm, ProductFilterForm
from marketplace.services import matching
from marketplace.services.errors import ValidationFailed

#: Candidates shown on an entry's matching page.
PAGE_K = 20


@bp.before_request
def require_login():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


def _flash_all(messages: list[str]) -> None:
    for message in messages:
        flash(message, "danger")


@bp.get("/opportunities/<int:id>")
def opportunity(id: int):
    form = ProductFilterForm(request.args)
    form.validate()
    try:
        report = matching.opportunity_report(current_user, id, PAGE_K, **form.filter_values())
    except ValidationFailed as exc:
        _flash_all(form.attach(exc))
        report = matching.opportunity_report(current_user, id, PAGE_K)
    return render_template("matching/opportunity.html", form=form, report=report)


@bp.get("/products/<int:id>")
def product(id: int):
    form = OpportunityFilterForm(request.args)
    form.validate()
    include_closed = bool(form.include_closed.data)
    try:
        report = matching.product_report(current_user, id, PAGE_K, include_closed=include_closed,
                                         **form.filter_values())
    except ValidationFailed as exc:
        _flash_all(form.attach(exc))
        report = matching.product_report(current_user, id, PAGE_K, include_closed=include_closed)
    return render_template("matching/product.html", form=form, report=report)


@bp.get("/search")
def search():
    form = MatchSearchForm(request.args)
    results = None
    if form.submitted and form.validate() and form.q.data:
        try:
            results, status = matching.search_report(
                current_user, form.q.data, form.side.data, form.k_value,
                include_closed=bool(form.include_closed.data), **form.filter_values()
            )
        except ValidationFailed as exc:
            _flash_all(form.attach(exc))
            results, status = None, matching.engine_status(current_user)
    else:
        if form.submitted and not form.q.errors and not form.q.data:
            form.q.errors = [*form.q.errors, "请输入要检索的内容"]
        status = matching.engine_status(current_user)
    return render_template("matching/search.html", form=form, results=results, status=status)
