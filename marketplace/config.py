"""Configuration defaults; every key can be overridden from the environment."""

from __future__ import annotations

import json
import os
import secrets
import warnings
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: Fusion weights of the matching engine (see docs/matching.md). Keys map onto
#: ``matching.MatchConfig``; override with ``MATCHING_WEIGHTS`` as JSON.
DEFAULT_MATCHING_WEIGHTS: dict[str, float] = {}


def load_config(instance_path: str) -> dict:
    """Build the default configuration from environment variables."""
    secret = os.environ.get("SECRET_KEY")
    if not secret:
        warnings.warn(
            "SECRET_KEY is not set: using a random development key. Set it in production.",
            stacklevel=2,
        )
        secret = secrets.token_hex(32)
    db_url = os.environ.get("DATABASE_URL") or f"sqlite:///{Path(instance_path) / 'marketplace.db'}"
    if db_url.startswith("postgres://"):
        db_url = "postgresql://" + db_url[len("postgres://") :]
    return {
        "SECRET_KEY": secret,
        "SQLALCHEMY_DATABASE_URI": db_url,
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "WTF_CSRF_TIME_LIMIT": None,
        "BOOTSTRAP_SERVE_LOCAL": True,
        "BOOTSTRAP_BTN_STYLE": "primary",
        "SEEDS_DIR": os.environ.get("SEEDS_DIR") or str(PROJECT_ROOT / "seeds"),
        "PER_PAGE": 20,
        "MATCHING_MODEL": os.environ.get("MATCHING_MODEL") or None,
        "MATCHING_INDEX_DIR": os.environ.get("MATCHING_INDEX_DIR") or str(Path(instance_path) / "index"),
        "MATCHING_HNSW_THRESHOLD": int(os.environ.get("MATCHING_HNSW_THRESHOLD", "20000")),
        "MATCHING_WEIGHTS": (
            json.loads(os.environ["MATCHING_WEIGHTS"])
            if os.environ.get("MATCHING_WEIGHTS")
            else DEFAULT_MATCHING_WEIGHTS
        ),
        "MATCHING_ENABLED": os.environ.get("MATCHING_ENABLED", "1") != "0",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": os.environ.get("SESSION_COOKIE_SECURE", "0") == "1",
        "MAX_CONTENT_LENGTH": 2 * 1024 * 1024,
    }
