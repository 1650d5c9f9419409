"""``flask lists import|export``: the lists from and to spreadsheets on the command line.

``flask lists import {opportunities|products|organizations} FILE [--batch ID] [--dry-run] [--as EMAIL]``
checks the file (the preview: counts per action, then every error as 第N行「列」：问题) and, unless
``--dry-run``, writes it in one transaction. It exits with status 1 when the file or any row is
invalid (nothing is written) and 0 otherwise. The command acts as ``--as EMAIL`` (default: the
earliest active admin account) with that account's permissions (``imports.can_import``).

``flask lists export {kind} -o FILE [--format xlsx|csv] [--batch ID] [--status STATUS]`` writes
every row of the kind (all statuses, like the back office) in the import template's columns.
"""

from __future__ import annotations

from pathlib import Path

import click
from flask.cli import AppGroup
from sqlalchemy import select

from marketplace.extensions import db
from marketplace.models import EntryStatus, Role, User
from marketplace.services import batches, exports, imports
from marketplace.services.errors import DomainError
from marketplace.services.jobs import ClickProgress
from marketplace.services.search import EntryFilters
from marketplace.services.spreadsheets import KIND_LABELS, KINDS, ORGANIZATIONS, Limits

lists_cli = AppGroup("lists", help="批量导入、导出清单 (import and export the lists as XLSX/CSV).")


def _actor(email: str | None) -> User:
    if email:
        user = db.session.scalar(select(User).where(User.email == User.normalize_email(email)))
        if user is None or not user.active:
            raise click.ClickException(f"账号不存在或已停用：{email}")
        return user
    user = db.session.scalar(
        select(User).where(User.role == Role.ADMIN, User.active.is_(True)).order_by(User.id).limit(1)
    )
    if user is None:
        raise click.ClickException("没有可用的系统管理员账号：请用 --as EMAIL 指定以哪个账号导入")
    return user


def _read(path: str) -> bytes:
    """The file's bytes, never more than one byte past the size limit (the service says why)."""
    with open(path, "rb") as handle:
        return handle.read(Limits.from_config().max_bytes + 1)


def _echo_preview(preview: imports.Preview) -> None:
    for message in preview.file_errors:
        click.echo(f"文件错误：{message}")
    counts = preview.counts
    click.echo("  ".join(f"{imports.ACTION_LABELS[a]} {counts[a]}" for a in imports.ACTIONS))
    for error in preview.errors:
        click.echo(str(error))
    for row in preview.rows:
        for similar in row.similar:
            click.echo(
                f"第{row.row}行：疑似与已发布条目 #{similar.id}「{similar.title}」（{similar.organization}，"
                f"相似度 {similar.score:.2f}）重复"
            )
    if not preview.similar_checked:
        click.echo("（行数较多，只检查了前面部分行的疑似重复）")


@lists_cli.command("import")
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--batch", "batch_id", type=click.IntRange(1, 2**31 - 1),
              help="导入到该征集中批次，作为已入选条目（组织方）")
@click.option("--dry-run", is_flag=True, help="只校验并显示预览，不写入")
@click.option("--as", "as_email", metavar="EMAIL", help="以该账号的身份和权限导入（默认：系统管理员）")
def import_command(kind: str, file: str, batch_id: int | None, dry_run: bool, as_email: str | None) -> None:
    """Import a spreadsheet (XLSX or CSV) of opportunities, products or organizations."""
    actor = _actor(as_email)
    data = _read(file)
    name = Path(file).name
    try:
        batch = batches.get_batch(batch_id) if batch_id is not None else None
        if dry_run:
            with ClickProgress(f"校验{KIND_LABELS[kind]}") as progress:
                preview = imports.preview(kind, data, name, actor=actor, batch=batch, progress=progress)
            _echo_preview(preview)
            if not preview.ok:
                click.echo("有错误，未写入任何更改。")
                raise SystemExit(1)
            click.echo("试运行（--dry-run）：未写入任何更改。")
            return
        with ClickProgress(f"导入{KIND_LABELS[kind]}") as progress:
            summary = imports.apply(kind, data, name, actor=actor, batch=batch, progress=progress)
    except imports.ImportValidationError as exc:
        _echo_preview(exc.preview)
        click.echo("有错误，未写入任何更改。")
        raise SystemExit(1) from None
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo("  ".join(f"{imports.ACTION_LABELS[a]} {n}" for a, n in summary.counts.items()))
    click.echo(f"已导入：{summary.describe()}")


@lists_cli.command("export")
@click.argument("kind", type=click.Choice(KINDS))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="输出文件")
@click.option("--format", "fmt", type=click.Choice(exports.FORMATS), help="默认按输出文件的扩展名，否则 xlsx")
@click.option("--batch", "batch_id", type=click.IntRange(1, 2**31 - 1), help="只导出该批次的条目")
@click.option("--status", type=click.Choice([s.value for s in EntryStatus]), help="只导出该状态的条目")
def export_command(kind: str, output: str, fmt: str | None, batch_id: int | None, status: str | None) -> None:
    """Export every row of a list (all statuses) in the import template's columns."""
    if fmt is None:
        suffix = Path(output).suffix.lower().lstrip(".")
        fmt = suffix if suffix in exports.FORMATS else "xlsx"
    if kind == ORGANIZATIONS and (batch_id is not None or status is not None):
        raise click.UsageError("单位名录没有批次和状态，不能使用 --batch / --status")
    try:
        if batch_id is not None:
            batches.get_batch(batch_id)
        filters = exports.ExportFilters(entries=EntryFilters(batch_id=batch_id), status=status)
        rows = exports.query_rows(kind, filters, "all")
        data = exports.export_file(kind, rows, fmt, trusted=True)
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    Path(output).write_bytes(data)
    click.echo(f"已导出 {len(rows)} 行到 {output}（{fmt}）")
