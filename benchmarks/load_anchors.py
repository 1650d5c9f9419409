"""The two anchor apps of ``benchmarks/load.py``, served by gunicorn with the app's settings.

* ``plain``: a minimal Flask app rendering one template of the home page's size (the home page's
  own HTML, captured by ``load.py``, with one variable);
* ``one_query``: the same page after one ``SELECT 1`` through Flask-SQLAlchemy, with the app's
  engine options, on the benchmark's database.

Both read ``LOAD_ANCHOR_TEMPLATE`` (a folder holding ``page.html``); ``one_query`` also reads
``DATABASE_URL``. gunicorn: ``benchmarks.load_anchors:plain()`` or ``…:one_query()``.
"""

from __future__ import annotations

import os

from flask import Flask, render_template
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import text


def _app() -> Flask:
    return Flask(__name__, template_folder=os.environ["LOAD_ANCHOR_TEMPLATE"])


def plain() -> Flask:
    app = _app()

    @app.get("/")
    def page():
        return render_template("page.html", title="全景江西")

    return app


def one_query() -> Flask:
    app = _app()
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"pool_pre_ping": True}  # as marketplace.config
    db = SQLAlchemy(app)

    @app.get("/")
    def page():
        db.session.execute(text("SELECT 1")).scalar()
        return render_template("page.html", title="全景江西")

    return app
