"""The one way views read a page number (or a seek anchor) from the query string, and the
page object of keyset-paginated lists."""

from __future__ import annotations

from flask import request

#: Deeper pages are clamped, so no offset can overflow the database's integer.
MAX_PAGE = 10_000


def page_arg(name: str = "page") -> int:
    """The page number in ``request.args[name]``: malformed or out-of-range values fall back to
    the nearest valid page (1 … :data:`MAX_PAGE`) instead of an error."""
    raw = (request.args.get(name) or "").strip()
    if not (raw.isascii() and raw.isdigit()):
        return 1  # empty, negative or not a number
    if len(raw) > len(str(MAX_PAGE)):
        return MAX_PAGE
    return min(max(int(raw), 1), MAX_PAGE)


def id_arg(name: str) -> int | None:
    """An optional id in ``request.args[name]``: None unless a positive database integer."""
    raw = (request.args.get(name) or "").strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10 or not 0 < int(raw) <= 2**31 - 1:
        return None
    return int(raw)


class KeysetPage:
    """One page of a list read by keyset (seek) or by a converted page number.

    It offers what the ``pagination`` macro and the API read from flask-sqlalchemy's
    ``Pagination`` (``items``, ``page``, ``per_page``, ``total``, ``pages``, ``has_prev``,
    ``has_next``, ``prev_num``, ``next_num``) plus the seek links: ``prev_args`` and
    ``next_args`` are the query arguments of 上一页 / 下一页 (``before=<first id>`` /
    ``after=<last id>``, with the page number as a label), and :meth:`numbered` the page numbers
    worth a direct link.

    ``page`` is None when a seek link came without its page label: the rows are right, only
    the number of the page is unknown.
    """

    #: Numbered links: always the first pages, the neighbours of the current page and the last.
    FIRST_PAGES = 5
    AROUND = 2

    def __init__(self, items: list, *, page: int | None, per_page: int, total: int,
                 has_prev: bool, has_next: bool) -> None:
        self.items = items
        self.page = page
        self.per_page = per_page
        self.total = total
        self.has_prev = has_prev
        self.has_next = has_next
        #: 1-based position of the first row in the whole list (None: not known).
        self.first_index: int | None = None if page is None else (page - 1) * per_page + 1

    @property
    def pages(self) -> int:
        return max(-(-self.total // self.per_page), 1) if self.total else 0

    @property
    def first_id(self) -> int | None:
        return self.items[0].id if self.items else None

    @property
    def last_id(self) -> int | None:
        return self.items[-1].id if self.items else None


    @property
    def prev_num(self) -> int | None:
        return self.page - 1 if self.page is not None and self.has_prev and self.page > 1 else None

    @property
    def next_num(self) -> int | None:
        return self.page + 1 if self.page is not None and self.has_next else None

    @property
    def prev_args(self) -> dict[str, int] | None:
        """Query arguments of 上一页 (None: there is none). Page 1 is always a plain link."""
        if not self.has_prev:
            return None
        if self.page == 2 or not self.items:
            return {"page": 1}
        args = {"before": self.first_id}
        if self.prev_num is not None:
            args["page"] = self.prev_num
        return args

    @property
    def next_args(self) -> dict[str, int] | None:
        """Query arguments of 下一页 (None: this is the last page)."""
        if not self.has_next or not self.items:
            return None
        args = {"after": self.last_id}
        if self.next_num is not None:
            args["page"] = self.next_num
        return args

    def numbered(self) -> list[int | None]:
        """Page numbers to link directly, ascending, with None where numbers are left out."""
        last = self.pages
        wanted = set(range(1, min(self.FIRST_PAGES, last) + 1))
        if self.page is not None:
            wanted.update(p for p in range(self.page - self.AROUND, self.page + self.AROUND + 1)
                          if 1 <= p <= last)
        if last:
            wanted.add(last)
        out: list[int | None] = []
        for p in sorted(wanted):
            if out and out[-1] is not None and p != out[-1] + 1:
                out.append(None)
            out.append(p)
        return out


def list_args() -> tuple[int | None, int | None, int | None]:
    """``(page, after, before)`` of a list from the query string.

    Malformed anchors are ignored (None) and ``after`` wins when both are given. With an
    anchor, ``page`` is only the label our own links carry (None when absent); without one it
    is the page to show (1 when absent or malformed, see :func:`page_arg`).
    """
    after = id_arg("after")
    before = None if after is not None else id_arg("before")
    if after is None and before is None:
        return page_arg(), None, None
    return (page_arg() if request.args.get("page") else None), after, before
