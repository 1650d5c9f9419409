"""A live server for the browser tests and the screenshots command.

:class:`LiveServer` builds the app on a fresh SQLite database in a temporary folder, migrates it
(``flask db upgrade``), loads the demo seeds (``flask seed``) and serves it with werkzeug on a
free port in a background thread. Jobs run at once (``HUEY_IMMEDIATE``), matching uses the
offline encoder, and rate limits are off (many logins from one address).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from werkzeug.serving import make_server

from marketplace import create_app
from marketplace.config import PROJECT_ROOT


@dataclass(frozen=True)
class Account:
    email: str
    password: str
    name: str
    organization: str | None


def demo_accounts() -> dict[str, Account]:
    """The seeded demo accounts by role word: ``organizer``, ``gov``, ``firm``, ``admin``."""
    rows = json.loads((PROJECT_ROOT / "seeds" / "users.json").read_text(encoding="utf-8"))
    accounts = {}
    for row in rows:
        key = row["email"].split("@", 1)[0]
        accounts[key] = Account(row["email"], row["password"], row["name"], row.get("organization"))
    return accounts


class LiveServer:
    """``with LiveServer() as server: server.url`` — a seeded app served on 127.0.0.1."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="browser-live-"))
        self.url = ""
        self._server = None
        self._thread: threading.Thread | None = None
        self.app = create_app(
            {
                "SECRET_KEY": "browser-tests",
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{self.folder / 'live.db'}",
                "MATCHING_MODEL": "offline",
                "MATCHING_INDEX_DIR": str(self.folder / "index"),
                "UPLOAD_DIR": str(self.folder / "uploads"),
                "HUEY_IMMEDIATE": True,
                "RATE_LIMITS_ENABLED": False,
                "MAIL_SERVER": None,
            }
        )

    def start(self) -> LiveServer:
        from flask_migrate import upgrade

        from marketplace.services.seeding import load_seeds

        with self.app.app_context():
            upgrade()  # flask db upgrade
            load_seeds(self.app.config["SEEDS_DIR"])  # flask seed
        self._warm_up()
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="live-server", daemon=True)
        self._thread.start()
        return self

    def _warm_up(self) -> None:
        """Build the search and matching indexes now (the demo's ``flask matching rebuild``), so
        that no journey waits for the first query's index build."""
        from marketplace.services import matching

        with self.app.test_request_context("/"):
            self.app.test_client().get("/search?q=停车")
            for side in ("opportunity", "product"):
                matching.search("智慧停车", side, k=3)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self.app.app_context():
            from marketplace.extensions import db

            db.engine.dispose()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
