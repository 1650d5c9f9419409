"""Public pages: home, the two lists with filters, batch pages, detail pages and search.

Nothing here needs a login, and nothing shows an entry that is not published.
"""

from __future__ import annotations

from flask import render_template, request
from flask_login import current_user

from marketplace.models import EntryKind
from marketplace.paging import list_args, page_arg
from marketplace.portal import bp
from marketplace.portal.forms import OpportunityFilterForm, ProductFilterForm, SearchForm
from marketplace.services import lifecycle, matching, portal
from marketplace.services import responses as response_service
from marketplace.services.search import highlight, snippet

LIST_PER_PAGE = 20
BATCH_PER_PAGE = 50
SEARCH_PER_PAGE = 20
#: Hits per side when searching both lists at once (each side links to its full results).
SEARCH_PREVIEW = 10

bp.add_app_template_filter(highlight, "highlight")
bp.add_app_template_filter(snippet, "snippet")


@bp.get("/")
def index():
    return render_template("portal/index.html", stats=portal.home_stats())


@bp.get("/opportunities")
def opportunities():
    form = OpportunityFilterForm(request.args, batches=portal.cached_published_batches(EntryKind.OPPORTUNITY))
    form.validate()
    page, after, before = list_args()
    listing = portal.list_opportunities(
        form.filters(), form.keyword(), page=page, per_page=LIST_PER_PAGE, after=after,
        before=before, card_only=True,
    )
    winners = response_service.winners(e.id for e in listing.page.items)
    return render_template("portal/opportunities.html", form=form, listing=listing, winners=winners)


@bp.get("/products")
def products():
    form = ProductFilterForm(request.args, batches=portal.cached_published_batches(EntryKind.PRODUCT))
    form.validate()
    page, after, before = list_args()
    listing = portal.list_products(
        form.filters(), form.keyword(), page=page, per_page=LIST_PER_PAGE, after=after,
        before=before, card_only=True,
    )
    return render_template("portal/products.html", form=form, listing=listing)


@bp.get("/opportunities/<int:id>")
def opportunity(id: int):
    entry = portal.get_published_opportunity(id)
    similar = matching.similar(EntryKind.OPPORTUNITY, entry)
    panel = response_service.opportunity_panel(current_user, entry)
    timeline = lifecycle.timeline(current_user, entry)
    return render_template("portal/opportunity.html", entry=entry, similar=similar, panel=panel,
                           timeline=timeline)


@bp.get("/products/<int:id>")
def product(id: int):
    entry = portal.get_published_product(id)
    similar = matching.similar(EntryKind.PRODUCT, entry)
    return render_template("portal/product.html", entry=entry, similar=similar)


@bp.get("/batches")
def batches():
    return render_template("portal/batches.html", batches=portal.published_batches_with_counts())


@bp.get("/batches/<int:id>")
def batch(id: int):
    found = portal.get_published_batch(id)
    page, after, before = list_args()
    page = portal.batch_entries(found, page=page, per_page=BATCH_PER_PAGE, after=after,
                                before=before)
    return render_template("portal/batch.html", batch=found, page=page)


@bp.get("/search")
def search():
    form = SearchForm(request.args, batches=portal.cached_published_batches())
    form.validate()
    q = form.keyword()
    results = None
    if q:
        sides = form.sides()
        single = len(sides) == 1
        results = portal.search_entries(
            q, sides, form.filters(),
            page=page_arg() if single else 1,
            per_page=SEARCH_PER_PAGE if single else SEARCH_PREVIEW,
        )
    return render_template("portal/search.html", form=form, q=q, results=results)
