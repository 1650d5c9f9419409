"""The one place that stores uploaded files (DESIGN.md, "Uploads").

* Bytes go under ``UPLOAD_DIR`` (outside the web root) with a random name; the original name,
  size, sniffed content type, hash and owner go into :class:`StoredFile`.
* Each use declares the types and the size it accepts (:class:`UploadPolicy`).
* The content type comes from the bytes (magic numbers), never from the name or the request.
* Files are served only by routes that ask the owning object's permission function first.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from flask import current_app

from marketplace.extensions import db
from marketplace.models import StoredFile, User
from marketplace.services.errors import NotFound, ValidationFailed

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: Magic numbers of the types we accept anywhere, checked in this order (an XLSX is a zip; the
#: check below also looks for the workbook in the zip's directory).
SIGNATURES: tuple[tuple[str, bytes, str], ...] = (
    ("application/pdf", b"%PDF-", "PDF"),
    ("image/png", b"\x89PNG\r\n\x1a\n", "PNG"),
    ("image/jpeg", b"\xff\xd8\xff", "JPEG"),
    (XLSX, b"PK\x03\x04", "XLSX"),
)
#: Text has no magic number: a policy that accepts it gets :func:`sniff_csv` on the first bytes.
CSV = "text/csv"
TYPE_LABELS = {mime: label for mime, _, label in SIGNATURES} | {CSV: "CSV"}
_TEXT_HEAD = 8192
MAX_NAME_LENGTH = 200
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class UploadPolicy:
    """What one use of uploads accepts. ``max_mb=None`` means the ``MAX_UPLOAD_MB`` setting."""

    purpose: str
    types: frozenset[str]
    max_mb: float | None = None

    def max_bytes(self) -> int:
        mb = self.max_mb if self.max_mb is not None else float(current_app.config["MAX_UPLOAD_MB"])
        return int(mb * 1024 * 1024)

    @property
    def types_label(self) -> str:
        return "、".join(TYPE_LABELS[t] for t in sorted(self.types))


def sniff(head: bytes) -> str | None:
    """The content type the first bytes prove, or None."""
    for mime, magic, _ in SIGNATURES:
        if head.startswith(magic):
            return mime
    return None


def sniff_csv(head: bytes) -> str | None:
    """``text/csv`` when the first bytes are text in UTF-8 or GB18030 (no NUL, no control
    characters but tab and line breaks); a multi-byte character cut at the end is allowed."""
    if not head or b"\x00" in head:
        return None
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = head.decode(encoding)
        except UnicodeDecodeError as exc:
            if exc.start < len(head) - 3:
                continue
            text = head[: exc.start].decode(encoding)
        if all(ch in "\t\r\n" or not unicodedata.category(ch).startswith("C") for ch in text):
            return CSV
    return None


def _is_xlsx(stream: BinaryIO) -> bool:
    """A zip whose directory names an Excel workbook (reads the directory only, never inflates)."""
    try:
        with zipfile.ZipFile(stream) as archive:
            return "xl/workbook.xml" in archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    finally:
        stream.seek(0)


def clean_filename(name: str | None) -> str:
    """The user's file name if it is a plain name; path tricks and control characters are refused."""
    name = unicodedata.normalize("NFC", (name or "").strip())
    if not name:
        raise ValueError("文件名为空")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"文件名不能超过{MAX_NAME_LENGTH}个字符")
    if any(ch in name for ch in "/\\:") or name.startswith(".") or ".." in name:
        raise ValueError("文件名不能包含路径（如 / \\ ..）")
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise ValueError("文件名包含无效字符")
    return name


def upload_dir() -> Path:
    path = Path(current_app.config["UPLOAD_DIR"])
    path.mkdir(parents=True, exist_ok=True)
    return path


def _path_of(stored: StoredFile) -> Path:
    return upload_dir() / stored.storage_name


def check(
    stream: BinaryIO, filename: str | None, policy: UploadPolicy, field: str = "attachment"
) -> tuple[str, int, str]:
    """Validate an upload without storing it: (clean name, size, sniffed type).

    Raises :class:`ValidationFailed` keyed by ``field`` with a Chinese message.
    """
    try:
        name = clean_filename(filename)
    except ValueError as exc:
        raise ValidationFailed({field: str(exc)}) from None
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    if size == 0:
        raise ValidationFailed({field: "文件为空，请重新选择"})
    limit = policy.max_bytes()
    if size > limit:
        raise ValidationFailed({field: f"文件不能超过 {limit / 1024 / 1024:g} MB"})
    mime = sniff(stream.read(16))
    stream.seek(0)
    if mime is None and CSV in policy.types:
        mime = sniff_csv(stream.read(_TEXT_HEAD))
        stream.seek(0)
    if mime == XLSX and not _is_xlsx(stream):
        mime = None
    if mime not in policy.types:
        raise ValidationFailed({field: f"只接受 {policy.types_label} 文件（按文件内容识别，改扩展名无效）"})
    return name, size, mime


def store(stream: BinaryIO, filename: str | None, policy: UploadPolicy, owner_organization_id: int | None,
          uploaded_by: User | None, field: str = "attachment") -> StoredFile:
    """Check and store an upload; the row is added to the session (committed by the caller).

    The bytes are written before the row commits, so a caller whose transaction fails calls
    :func:`remove_file` to leave no orphan behind.
    """
    name, size, mime = check(stream, filename, policy, field)
    storage_name = secrets.token_hex(16)
    digest = hashlib.sha256()
    target = upload_dir() / storage_name
    tmp = target.with_suffix(".part")
    with open(tmp, "wb") as out:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
    os.replace(tmp, target)
    stored = StoredFile(
        storage_name=storage_name,
        original_name=name,
        size=size,
        content_type=mime,
        sha256=digest.hexdigest(),
        purpose=policy.purpose,
        owner_organization_id=owner_organization_id,
        uploaded_by_id=uploaded_by.id if uploaded_by is not None else None,
    )
    db.session.add(stored)
    return stored


def remove_file(stored: StoredFile | str) -> None:
    """Delete the bytes of a stored file, given the row or its ``storage_name``."""
    name = stored if isinstance(stored, str) else stored.storage_name
    try:
        (upload_dir() / name).unlink()
    except FileNotFoundError:
        pass


def delete_committed(files: list[StoredFile]) -> None:
    """Delete rows and then their bytes, committing in between: bytes never outlive a row that
    still points at them, and a failed commit leaves both in place."""
    names = [f.storage_name for f in files]
    for stored in files:
        db.session.delete(stored)
    db.session.commit()
    for name in names:
        remove_file(name)


def open_file(stored: StoredFile) -> Path:
    """The path of a stored file's bytes, for a route that has already checked permission."""
    path = _path_of(stored)
    if not path.is_file():
        raise NotFound("文件不存在或已被删除")
    return path
