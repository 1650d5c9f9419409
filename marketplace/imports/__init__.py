"""批量导入与导出 pages (issue 9 §3–§4): one blueprint for members and organizers.

* ``/imports``: choose a list, download its XLSX template, upload a file; the upload becomes a
  background job ``imports.preview`` (:mod:`marketplace.imports.tasks`) whose result is the
  preview page ``/imports/<job id>``; 「确认导入」 queues ``imports.apply`` with the same file.
* ``/imports/export/…``: any filtered list or batch as XLSX or CSV, in the template's columns.

The permission functions are the services': ``imports.can_import`` and ``jobs.can_view``.
"""

from flask import Blueprint

bp = Blueprint("imports", __name__)

from marketplace.imports import routes  # noqa: E402,F401
