"""Versioned index files shared by every worker of a host.

An index (the matching engine's, the portal's keyword index) is built once, outside requests,
by a background job or a CLI command, into a fresh folder; :meth:`IndexStore.publish` then
renames the folder into place and switches a small JSON pointer atomically (``os.replace``).
Web workers only *open* the current version, read-only and memory-mapped where the format
allows, so the operating system keeps one copy of the pages for all of them. A worker that
still maps an older version keeps reading it: on POSIX, removing a folder does not take the
pages of a file that is still mapped. Old versions are pruned after a grace period.

Layout under ``root``::

    <name>.json                 the pointer: {"version": ..., "folder": ..., "meta": {...}}
    <name>-<version>/           one published version (never modified after publishing)
    .tmp-<name>-<random>/       a build in progress (removed when stale)
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Seconds an old version is kept after it was replaced (workers may still be opening it).
GRACE_SECONDS = 600
#: Seconds after which an unfinished build folder is considered abandoned.
STALE_BUILD_SECONDS = 3600


@dataclass(frozen=True)
class IndexVersion:
    """One published version: its folder and the metadata the builder stored with it."""

    version: str
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)


class IndexStore:
    """The published versions of one named index under ``root``."""

    def __init__(self, root: str | os.PathLike[str], name: str) -> None:
        self.root = Path(root)
        self.name = name

    @property
    def pointer(self) -> Path:
        return self.root / f"{self.name}.json"

    def current(self) -> IndexVersion | None:
        """The version the pointer names, or None (no pointer, unreadable, folder missing)."""
        try:
            data = json.loads(self.pointer.read_text(encoding="utf-8"))
            version, folder = str(data["version"]), Path(str(data["folder"])).name
        except (OSError, ValueError, KeyError, TypeError):
            return None
        path = self.root / folder
        if not path.is_dir():
            return None
        meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
        return IndexVersion(version=version, path=path, meta=meta)

    def new_build(self) -> Path:
        """A fresh, empty folder to write a build into (then :meth:`publish` it)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f".tmp-{self.name}-{uuid.uuid4().hex}"
        path.mkdir()
        return path

    def publish(self, build: Path, version: str, meta: dict[str, Any] | None = None) -> IndexVersion:
        """Move a finished build into place as ``version`` and point at it (atomically).

        Publishing a version that already exists (another process built the same data) keeps
        the existing folder and drops ``build``.
        """
        folder = self.root / f"{self.name}-{version}"
        if folder.is_dir():
            shutil.rmtree(build, ignore_errors=True)
        else:
            try:
                os.rename(build, folder)
            except OSError:  # another process published the same version first
                shutil.rmtree(build, ignore_errors=True)
        pointer = {"version": version, "folder": folder.name, "meta": meta or {},
                   "published_at": time.time()}
        tmp = self.root / f".{self.name}.json.{uuid.uuid4().hex}"
        tmp.write_text(json.dumps(pointer, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.pointer)
        self.prune()
        return IndexVersion(version=version, path=folder, meta=meta or {})

    def discard(self, build: Path) -> None:
        """Drop a build that failed."""
        shutil.rmtree(build, ignore_errors=True)

    def prune(self, grace: float = GRACE_SECONDS) -> int:
        """Remove versions other than the current one older than ``grace`` seconds, and stale
        unfinished builds. Returns how many folders were removed."""
        current = self.current()
        now = time.time()
        removed = 0
        if not self.root.is_dir():
            return 0
        for path in self.root.iterdir():
            try:
                age = now - path.stat().st_mtime
            except OSError:
                continue
            old_version = (
                path.name.startswith(f"{self.name}-")
                and path.is_dir()
                and (current is None or path != current.path)
                and age > grace
            )
            stale_build = path.name.startswith(f".tmp-{self.name}-") and age > STALE_BUILD_SECONDS
            if old_version or stale_build:
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        return removed
