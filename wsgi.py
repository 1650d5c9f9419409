"""WSGI entry point: ``gunicorn wsgi:app``.

``MATCHING_PRELOAD=1`` loads the matching encoder (the e5-small model) while the app is
created. With ``gunicorn --preload`` that happens once, in the master, before it forks: the
workers share the model's memory pages copy-on-write instead of loading one copy each
(docs/matching.md, "Memory"). No query is encoded before the fork.
"""

import os

from marketplace import create_app

_PRELOAD = os.environ.get("MATCHING_PRELOAD", "").strip().lower() in {"1", "true", "yes", "on"}

app = create_app({"MATCHING_PRELOAD": True} if _PRELOAD else None)
