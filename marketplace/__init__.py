"""The scenario opportunity marketplace (场景机会清单 / 产品清单 对接平台)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.routing import IntegerConverter

from marketplace import timeutil
from marketplace.config import PROJECT_ROOT, load_config
from marketplace.extensions import bootstrap, csrf, db, login_manager, migrate


class BoundedIntConverter(IntegerConverter):
    """``<int:id>`` limited to the database integer range: larger ids are a 404, not a 500."""

    def __init__(self, url_map, *args, **kwargs):
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(url_map, *args, **kwargs)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Application factory. ``config`` overrides the environment-derived defaults.

    It never touches the database: migrations and seeds are explicit CLI commands.
    """
    app = Flask(
        __name__,
        instance_relative_config=True,
        template_folder=str(PROJECT_ROOT / "templates"),
    )
    app.url_map.converters["int"] = BoundedIntConverter
    app.config.from_mapping(load_config(app.instance_path))
    # Readable Chinese in every JSON response (no \uXXXX escapes), declared as UTF-8.
    app.json.ensure_ascii = False
    app.json.mimetype = "application/json; charset=utf-8"
    if config:
        app.config.from_mapping(config)
    if not app.config.get("MAX_CONTENT_LENGTH"):
        upload_bytes = int(float(app.config["MAX_UPLOAD_MB"]) * 1024 * 1024)
        app.config["MAX_CONTENT_LENGTH"] = max(2 * 1024 * 1024, 2 * upload_bytes + 1024 * 1024)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    timeutil.set_display_timezone(app.config["DISPLAY_TIMEZONE"])

    db.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"))
    csrf.init_app(app)
    login_manager.init_app(app)
    bootstrap.init_app(app)

    from marketplace import models, security  # noqa: F401  (models: register the tables)
    from marketplace.services import sessions

    # Sessions and remember-me cookies the server can end; security headers, control
    # characters and rate limits (services/sessions.py, security.py).
    login_manager.user_loader(sessions.load_user)
    security.init_app(app)

    from marketplace import errors, filters, site
    from marketplace.admin import bp as admin_bp
    from marketplace.api import bp as api_bp
    from marketplace.api import pages_bp as api_pages_bp
    from marketplace.auth import bp as auth_bp
    from marketplace.events import bp as events_bp
    from marketplace.jobs.routes import bp as jobs_bp
    from marketplace.matching_views import bp as matching_bp
    from marketplace.notifications import bp as notifications_bp
    from marketplace.portal import bp as portal_bp
    from marketplace.responses import bp as responses_bp
    from marketplace.workspace import bp as workspace_bp

    app.register_blueprint(portal_bp)
    app.register_blueprint(auth_bp, url_prefix="/auth")
    app.register_blueprint(workspace_bp, url_prefix="/my")
    app.register_blueprint(admin_bp, url_prefix="/admin")
    app.register_blueprint(matching_bp, url_prefix="/matching")
    app.register_blueprint(notifications_bp, url_prefix="/notifications")
    app.register_blueprint(api_bp, url_prefix="/api/v1")
    app.register_blueprint(api_pages_bp, url_prefix="/api")  # /api/docs, /api/tokens
    app.register_blueprint(responses_bp, url_prefix="/responses")
    app.register_blueprint(events_bp, url_prefix="/events")
    app.register_blueprint(jobs_bp, url_prefix="/jobs")
    from marketplace.imports import bp as imports_bp

    app.register_blueprint(imports_bp, url_prefix="/imports")
    from marketplace.lifecycle import bp as lifecycle_bp

    app.register_blueprint(lifecycle_bp)  # /lifecycle/… and /labs
    from marketplace.programme import bp as programme_bp

    app.register_blueprint(programme_bp)  # /programme/… and /achievements
    errors.register(app)
    filters.register(app)
    site.register(app)
    from marketplace import http_cache

    http_cache.init_app(app)  # after security.init_app: rate limits count before a 304

    from marketplace.services import search

    search.init_app(app)

    from marketplace.services import matching

    matching.init_app(app)

    from marketplace import jobs

    jobs.init_app(app)

    from marketplace.cli import register as register_cli

    register_cli(app)

    from marketplace.matching_cli import register as register_matching_cli

    register_matching_cli(app)
    return app
