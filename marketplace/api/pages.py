"""The API's pages: ``/api/docs`` (read from the OpenAPI document) and ``/api/tokens``."""

from __future__ import annotations

import json
from typing import Any

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from marketplace.api import pages_bp
from marketplace.api.forms import ApiTokenForm
from marketplace.api.openapi import build_document
from marketplace.services import api_tokens
from marketplace.services.errors import ValidationFailed

REF_PREFIX = "#/components/schemas/"


# -------------------------------------------------------------------- documentation


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return components[ref[len(REF_PREFIX):]] if ref else schema


def _type_label(schema: dict[str, Any], components: dict[str, Any]) -> str:
    """A short type name: ``integer``, ``string | null``, ``array of ProductHit``…"""
    if "$ref" in schema:
        return schema["$ref"][len(REF_PREFIX):]
    if "anyOf" in schema:
        return " | ".join(_type_label(s, components) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"array of {_type_label(schema.get('items', {}), components)}"
    if "enum" in schema and "type" not in schema:
        return "string"
    label = schema.get("type", "any")
    return f"{label} ({schema['format']})" if "format" in schema else label


def _constraints(schema: dict[str, Any]) -> str:
    parts = []
    if "minimum" in schema or "maximum" in schema:
        parts.append(f"{schema.get('minimum', '')}–{schema.get('maximum', '')}")
    if "maxLength" in schema:
        parts.append(f"长度 {schema.get('minLength', 0)}–{schema['maxLength']}")
    if "default" in schema:
        parts.append(f"默认 {json.dumps(schema['default'], ensure_ascii=False)}")
    return "；".join(parts)


def _enum(schema: dict[str, Any]) -> list[str]:
    if "enum" in schema:
        return [str(v) for v in schema["enum"]]
    for option in schema.get("anyOf", ()):
        if "enum" in option:
            return [str(v) for v in option["enum"]]
    return []


def _fields(model: str, components: dict[str, Any]) -> list[dict[str, str]]:
    schema = components[model]
    required = set(schema.get("required", ()))
    return [
        {
            "name": name,
            "type": _type_label(prop, components),
            "required": name in required,
            "description": prop.get("description", ""),
        }
        for name, prop in schema.get("properties", {}).items()
    ]


def _models_of(schema: dict[str, Any]) -> list[str]:
    """Every model that a response body refers to, depth first, each once."""
    seen: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref and ref[len(REF_PREFIX):] not in seen:
                seen.append(ref[len(REF_PREFIX):])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return seen


def _example_url(path: str, parameters: list[dict[str, Any]]) -> str:
    url = path.replace("{id}", "1")
    query = [f"{p['name']}={p['example']}" for p in parameters if p["in"] == "query" and "example" in p]
    return url + ("?" + "&".join(query[:2]) if query else "")


def describe(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The operations of ``document`` as the docs page shows them."""
    components = document["components"]["schemas"]
    operations = []
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            body = op["responses"]["200"]["content"]["application/json"]["schema"]
            models = _models_of({"root": body})
            expanded = []
            for model in models:
                for nested in _models_of(components[model]):
                    if nested not in models and nested not in expanded:
                        expanded.append(nested)
            operations.append(
                {
                    "id": op["operationId"],
                    "method": method.upper(),
                    "path": path,
                    "summary": op["summary"],
                    "description": op["description"],
                    "tag": op["tags"][0],
                    "login_required": op["x-login-required"],
                    "parameters": [
                        {
                            "name": p["name"],
                            "in": p["in"],
                            "required": p["required"],
                            "type": _type_label(p["schema"], components),
                            "constraints": _constraints(p["schema"]),
                            "enum": _enum(p["schema"]),
                            "description": p.get("description", ""),
                        }
                        for p in op["parameters"]
                    ],
                    "example": _example_url(path, op["parameters"]),
                    "responses": [
                        {"code": code, "description": r["description"]} for code, r in op["responses"].items()
                    ],
                    "models": [
                        {"name": m, "fields": _fields(m, components)}
                        for m in models + expanded
                        if components[m].get("properties")
                    ],
                }
            )
    return operations


@pages_bp.get("/docs")
def docs():
    document = build_document(current_app)
    return render_template(
        "api/docs.html",
        document=document,
        operations=describe(document),
        base_url=request.host_url.rstrip("/"),
    )


# -------------------------------------------------------------------- personal tokens


def _tokens_page(form: ApiTokenForm, issued: api_tokens.IssuedToken | None = None):
    response = current_app.make_response(
        render_template(
            "api/tokens.html",
            form=form,
            tokens=api_tokens.user_tokens(current_user),
            issued=issued,
            state=api_tokens.state,
            can=api_tokens.can,
            latest_expiry=api_tokens.latest_expiry(),
        )
    )
    # The page that shows a new token must not be kept by the browser or a proxy.
    response.headers["Cache-Control"] = "no-store"
    return response


@pages_bp.get("/tokens")
@login_required
def tokens():
    return _tokens_page(ApiTokenForm())


@pages_bp.post("/tokens")
@login_required
def create_token():
    form = ApiTokenForm()
    if not form.validate_on_submit():
        return _tokens_page(form)
    try:
        issued = api_tokens.create_token(current_user, form.name.data, form.expires_on.data)
    except ValidationFailed as exc:
        form.attach_errors(exc.errors)
        return _tokens_page(form)
    return _tokens_page(ApiTokenForm(formdata=None), issued=issued)


@pages_bp.post("/tokens/<int:id>/revoke")
@login_required
def revoke_token(id: int):
    token = api_tokens.revoke_token(current_user, id)
    flash(f"已撤销令牌「{token.name}」，使用它的调用将被拒绝（401）。", "success")
    return redirect(url_for("api_pages.tokens"))
