"""The version counter that tells every worker its in-memory indexes are stale.

Services call :func:`bump` in the same transaction as any change to what is public
(publication, withdrawal, an approved edit). Each worker remembers the version its indexes
were built from and refreshes them when :func:`current_version` has moved.
"""

from __future__ import annotations

from sqlalchemy import select, update

from marketplace.extensions import db
from marketplace.models import IndexState

ENTRIES = "entries"
#: The counter that every commit to a table public pages show moves (``marketplace/http_cache.py``).
PAGES = "pages"
#: ``request.environ`` key where ``marketplace/http_cache.py`` leaves the ``index_state`` rows it
#: read for a public page's validators ({name: (version, updated_at)}), so that the services
#: need not read them again in the same request.
REQUEST_STAMPS = "marketplace.index_state"
#: Session flag: the entries changed; the keyword index build is queued after the commit
#: (:mod:`marketplace.services.search_build`).
SEARCH_BUILD_FLAG = "search_build_requested"


def bump(name: str = ENTRIES) -> None:
    """Atomically increment the version (creating the row on first use)."""
    if name == ENTRIES:
        db.session.info[SEARCH_BUILD_FLAG] = True
    result = db.session.execute(
        update(IndexState).where(IndexState.name == name).values(version=IndexState.version + 1)
    )
    if result.rowcount == 0:
        db.session.add(IndexState(name=name, version=1))
        db.session.flush()


def current_version(name: str = ENTRIES) -> int:
    return db.session.scalar(select(IndexState.version).where(IndexState.name == name)) or 0
