"""The OpenAPI 3.1 document of ``/api/v1``, generated from the code.

Each API view declares itself with :func:`operation`: a summary, the pydantic model of its query
parameters, the pydantic model of its 200 body and the errors it can answer. The same query model
parses the request (:func:`parse_query`), so what the document says is what the view accepts.
:func:`build_document` walks ``app.url_map``: every rule under ``/api/v1`` must carry an
operation (a rule without one raises, so no endpoint can go undocumented), path parameters come
from the rule's converters (``<int:id>`` with its bounds), and the JSON Schemas come from the
models (pydantic emits JSON Schema 2020-12, the dialect of OpenAPI 3.1).

Values that depend on the reference data (cities, application fields, technology tags) are
marked with ``x-enum-source`` in the models and become ``enum`` lists when the document is built;
:func:`parse_query` refuses values outside them with a Chinese message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, request
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from werkzeug.routing import IntegerConverter

from marketplace.api.schemas import ERROR_DESCRIPTIONS, ApiError, Query
from marketplace.reference import reference
from marketplace.services.errors import ValidationFailed

API_PREFIX = "/api/v1"
OPENAPI_VERSION = "3.1.0"
REF_TEMPLATE = "#/components/schemas/{model}"
_RULE_VARIABLE = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")

#: ``x-enum-source`` name → the allowed values (read when the document is built).
ENUM_SOURCES: dict[str, Callable[[], list[str]]] = {
    "cities": lambda: list(reference().cities),
    "categories": lambda: list(reference().categories),
    "areas": lambda: list(reference().area_names),
    "tags": lambda: list(reference().tags),
}


@dataclass(frozen=True)
class Operation:
    """What the document says about one view."""

    summary: str
    description: str
    tag: str
    response: type[BaseModel]
    query: type[Query] | None = None
    #: True: anonymous callers get 401 (a token or a signed-in session is needed).
    login_required: bool = False
    errors: tuple[int, ...] = (400, 401, 429)
    examples: dict[str, Any] = field(default_factory=dict)


def operation(**kwargs: Any) -> Callable:
    """Attach an :class:`Operation` to an API view (read by :func:`build_document`)."""
    op = Operation(**kwargs)

    def decorate(view: Callable) -> Callable:
        view.openapi_operation = op  # type: ignore[attr-defined]
        return view

    return decorate


# -------------------------------------------------------------------- requests


def parse_query(model: type[Query]) -> Query:
    """``request.args`` parsed by ``model``; a bad value is :class:`ValidationFailed` (400)
    with a Chinese message per parameter. Unknown parameters are ignored."""
    raw = {name: request.args.get(name) for name in model.model_fields if name in request.args}
    for name in model.blank_is_absent():
        if raw.get(name) == "":
            del raw[name]
    try:
        query = model.model_validate(raw)
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "query"
            errors.setdefault(name, model.message_for(name))
        raise ValidationFailed(errors) from None
    errors = {}
    for name, source in model.enum_sources().items():
        value = getattr(query, name)
        if value is not None and value not in ENUM_SOURCES[source]():
            errors[name] = model.message_for(name, value)
    if errors:
        raise ValidationFailed(errors)
    return query


# -------------------------------------------------------------------- the document


def _resolve_enums(schema: Any) -> Any:
    """Replace every ``x-enum-source`` marker by the ``enum`` it names."""
    if isinstance(schema, dict):
        out = {k: _resolve_enums(v) for k, v in schema.items() if k != "x-enum-source"}
        source = schema.get("x-enum-source")
        if source is not None:
            out["enum"] = ENUM_SOURCES[source]()
        return out
    if isinstance(schema, list):
        return [_resolve_enums(v) for v in schema]
    return schema


def _path_parameter(rule, name: str) -> dict[str, Any]:
    converter = rule._converters[name]
    if isinstance(converter, IntegerConverter):
        schema: dict[str, Any] = {"type": "integer", "minimum": max(converter.min or 0, 1)}
        if converter.max is not None:
            schema["maximum"] = converter.max
    else:
        schema = {"type": "string"}
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": "条目编号"}


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or a value, never JSON null: drop the ``null`` branch and
    the ``None`` default that pydantic gives an optional field."""
    branches = [b for b in schema.get("anyOf", ()) if b.get("type") != "null"]
    if "anyOf" not in schema or len(branches) != 1:
        return schema
    out = {k: v for k, v in schema.items() if k != "anyOf" and not (k == "default" and v is None)}
    return {**branches[0], **out}


def _query_parameters(model: type[Query]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF_TEMPLATE)
    required = set(schema.get("required", ()))
    params = []
    for name, prop in schema["properties"].items():
        prop = _not_null(dict(prop))
        description = prop.pop("description", "")
        prop.pop("title", None)
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "description": description,
            "schema": _resolve_enums(prop),
        }
        if "examples" in prop:
            param["example"] = prop["examples"][0]
        params.append(param)
    return params


def _error_response(code: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": ERROR_DESCRIPTIONS[code],
        "content": {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(model="ApiError")}}},
    }
    if code == 429:
        response["headers"] = {
            "Retry-After": {"description": "多少秒后可以重试", "schema": {"type": "integer"}}
        }
    if code == 401:
        response["headers"] = {
            "WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}
        }
    return response


def api_rules(app: Flask) -> list:
    """Every URL rule of the app under ``/api/v1``."""
    return [rule for rule in app.url_map.iter_rules() if rule.rule.startswith(API_PREFIX + "/")]


def build_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every ``/api/v1`` rule of ``app``."""
    paths: dict[str, dict[str, Any]] = {}
    models: list[type[BaseModel]] = [ApiError]
    for rule in sorted(api_rules(app), key=lambda r: r.rule):
        view = app.view_functions[rule.endpoint]
        op: Operation | None = getattr(view, "openapi_operation", None)
        if op is None:
            raise RuntimeError(f"{rule.rule} has no OpenAPI operation (marketplace.api.openapi.operation)")
        path = _RULE_VARIABLE.sub(r"{\1}", rule.rule)
        parameters = [_path_parameter(rule, name) for name in sorted(rule.arguments)]
        if op.query is not None:
            parameters += _query_parameters(op.query)
        models.append(op.response)
        errors = set(op.errors) | {400, 401, 429}
        if rule.arguments:
            errors.add(404)
        if op.login_required:
            errors |= {401, 403, 404}
        responses: dict[str, Any] = {
            "200": {
                "description": "成功",
                "content": {
                    "application/json": {"schema": {"$ref": REF_TEMPLATE.format(model=op.response.__name__)}}
                },
            }
        }
        responses.update({str(code): _error_response(code) for code in sorted(errors)})
        entry: dict[str, Any] = {
            "operationId": rule.endpoint.replace(".", "_"),
            "summary": op.summary,
            "description": op.description,
            "tags": [op.tag],
            "parameters": parameters,
            "responses": responses,
            "security": (
                [{"bearerAuth": []}, {"sessionCookie": []}]
                if op.login_required
                else [{}, {"bearerAuth": []}, {"sessionCookie": []}]
            ),
            "x-login-required": op.login_required,
        }
        if op.examples:
            entry["x-example-query"] = op.examples
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = entry
    _, defs = models_json_schema([(m, "serialization") for m in models], ref_template=REF_TEMPLATE)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "全景江西场景机会清单与产品清单平台 API",
            "version": "1.0.0",
            "description": (
                "公开接口（已发布清单、检索）无需认证；条目的匹配排名只对发布单位成员和组织方开放，"
                "使用个人 API 令牌（Authorization: Bearer mkt_…）或浏览器登录会话调用。"
                "所有错误均为 JSON：{\"error\": {\"code\": …, \"message\": \"…\"}}。"
            ),
        },
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "清单", "description": "已发布的机会清单与产品清单（公开）"},
            {"name": "检索", "description": "自由文本检索已发布条目（公开）"},
            {"name": "匹配", "description": "条目的匹配排名（发布单位成员与组织方）"},
            {"name": "文档", "description": "本文档"},
        ],
        "paths": paths,
        "components": {
            "schemas": _resolve_enums(defs.get("$defs", {})),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "个人 API 令牌（在“API 令牌”页面创建，形如 mkt_…，只显示一次）",
                },
                "sessionCookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "session",
                    "description": "浏览器中登录后的会话（仅用于只读调用）",
                },
            },
        },
    }
