"""Schemathesis against the OpenAPI document, on the seeded demo data, through WSGI (no server).

Every operation is called with generated valid and invalid parameters, anonymously and with the
tokens of an organizer and of a firm member; the test fails on any 5xx, any response that does
not match its documented schema, status code or content type, and on any unpublished entry in a
response. Examples are bounded so the whole file stays around a minute (marker ``api_fuzz``:
part of the default run, so CI runs it on SQLite and PostgreSQL).
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from flask import g
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select

from marketplace.models import EntryStatus, Opportunity, Organization, Product, User
from marketplace.services import api_tokens
from marketplace.services.seeding import load_seeds

pytestmark = pytest.mark.api_fuzz

CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]
#: Examples per operation, generation mode and caller; fewer for the runs on fixed real ids.
MAX_EXAMPLES = 10
FIXED_ID_EXAMPLES = 4


@pytest.fixture
def seeded(app, db, make):
    """The demo seeds, plus one unpublished need and product that must never be returned."""
    load_seeds(app.config["SEEDS_DIR"])
    gov = db.session.scalar(select(Organization).where(Organization.kind == "government"))
    firm = db.session.scalar(select(Organization).where(Organization.kind == "enterprise"))
    make.opportunity(gov, EntryStatus.DRAFT, title="未公开的停车诱导需求")
    make.product(firm, EntryStatus.SUBMITTED, name="未公开的泊位共享平台")
    ids = {}
    for kind, model in (("opportunity", Opportunity), ("product", Product)):
        hidden = set(db.session.scalars(select(model.id).where(model.status != EntryStatus.PUBLISHED)))
        ids[kind] = hidden
        ids[f"hidden_{kind}"] = min(hidden)
        ids[f"published_{kind}"] = db.session.scalar(
            select(model.id).where(model.status == EntryStatus.PUBLISHED).limit(1)
        )
    return ids


def _token_of(db, email: str) -> str:
    return api_tokens.create_token(db.session.scalar(select(User).where(User.email == email)), "fuzz").raw


def _no_unpublished_entries(body: Any, hidden: dict[str, set[int]]) -> None:
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        return
    for result in body["results"]:
        kind = "product" if "name" in result else "opportunity"
        assert result["id"] not in hidden[kind], f"unpublished {kind} {result['id']} in a response"


def _run(operation, hidden, headers: dict[str, str], mode: GenerationMode, examples: int = MAX_EXAMPLES,
         **fixed: Any) -> None:
    @given(case=operation.as_strategy(generation_mode=mode, **fixed))
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def call(case):
        g.pop("_login_user", None)
        response = case.call(headers=headers)
        case.validate_response(response, checks=CHECKS, headers=headers)
        if response.status_code == 200:
            _no_unpublished_entries(response.json(), hidden)

    call()


def test_every_operation_conforms_to_the_document(app, db, seeded):
    callers = {
        "anonymous": {},
        "organizer": {"Authorization": f"Bearer {_token_of(db, 'organizer@demo.jxcj.cn')}"},
        "firm member": {"Authorization": f"Bearer {_token_of(db, 'firm@demo.jxcj.cn')}"},
    }
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    # Schemathesis leaves out the operation that serves the document itself.
    documented = {path for path in schema.raw_schema["paths"] if path != "/api/v1/openapi.json"}
    assert {operation.path for operation in operations} == documented
    for operation in operations:
        for headers in callers.values():
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _run(operation, seeded, headers, mode)
            if "{id}" in operation.path:
                # Generated ids are almost all unknown: also ask for real ones.
                kind = "opportunity" if operation.path.startswith("/api/v1/opportunities") else "product"
                for entry_id in (seeded[f"published_{kind}"], seeded[f"hidden_{kind}"]):
                    _run(operation, seeded, headers, GenerationMode.POSITIVE, FIXED_ID_EXAMPLES,
                         path_parameters={"id": entry_id})
