"""`rulebook` command line: ingest, ask, eval, learn, serve, changes, audit, records, gaps, slack, feishu,
dingtalk."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from assistant.config import Settings, load_settings
from assistant.errors import RulebookError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="Answers questions about your rulebook, citing the clause that applies.\n\n"
    "Example: rulebook ingest examples/rulebook && rulebook ask '客户咨询多久内要答复？'",
)
out = Console()
err = Console(stderr=True)
log = logging.getLogger("rulebook")

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Index folder (default: RULEBOOK_DATA_DIR, else ./.rulebook)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _settings(data_dir: Path | None) -> Settings:
    return load_settings(data_dir=data_dir)


def _run(fn: Callable[[], Any]) -> Any:
    """Turn domain errors into one red line and exit code 1; anything else is logged, code 2."""
    try:
        return fn()
    except RulebookError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/yellow]")
        raise typer.Exit(130) from None
    except Exception as exc:  # never a stack trace on the terminal; the debug log has it
        log.debug("unexpected error", exc_info=True)
        err.print(f"[red]internal error:[/red] {exc.__class__.__name__}: {exc} "
                  "(run with RULEBOOK_LOG=debug for the stack trace)")
        raise typer.Exit(2) from None


class _RichProgress:
    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: Any = None

    def start(self, phase: str, total: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=self.progress.tasks[self.task].total)
        self.task = self.progress.add_task(phase, total=max(total, 1))

    def advance(self, n: int = 1) -> None:
        if self.task is not None:
            self.progress.advance(self.task, n)


@app.command()
def ingest(
    directory: Annotated[Path, typer.Argument(help="Folder of rule documents (.md .txt .docx .pdf .html).")],
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Make the index mirror DIRECTORY: new and changed files indexed, deleted ones removed.

    Example: rulebook ingest examples/rulebook --data-dir .rulebook
    """
    from ingest.pipeline import ingest as run_ingest

    settings = _run(lambda: _settings(data_dir))

    def go():  # type: ignore[no-untyped-def]
        with Progress(TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err, transient=as_json,
                      disable=not err.is_terminal and not as_json) as bar:
            return run_ingest(directory, settings, _RichProgress(bar))

    report = _run(go)
    if as_json:
        out.print_json(json.dumps(report.to_dict(), ensure_ascii=False))
        return
    state = "updated" if report.changed else "already up to date"
    table = Table(title=f"Index {report.generation} ({state}, {report.seconds:.1f} s)")
    table.add_column("")
    table.add_column("count", justify="right")
    for name, value in (("documents", report.documents), ("clauses", report.clauses),
                        ("chunks", report.chunks), ("added", len(report.added)),
                        ("updated", len(report.updated)), ("removed", len(report.removed)),
                        ("unchanged", len(report.unchanged)), ("skipped", len(report.skipped)),
                        ("embedded", report.embedded), ("vectors reused", report.vectors_reused)):
        table.add_row(name, str(value))
    out.print(table)
    for s in report.skipped:  # file names and reasons are text, not rich markup
        out.print(f"[yellow]skipped[/yellow] {escape(s['source'])}: {escape(s['reason'])}")
    for s in report.cut:
        out.print(f"[yellow]cut[/yellow] {escape(s['source'])}: {escape(s['reason'])}")


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question, in Chinese or English.")],
    data_dir: DataDir = None,
    as_json: AsJson = False,
    history: Annotated[list[str] | None, typer.Option(
        "--history", help="An earlier question of the conversation (repeatable, oldest first).")] = None,
) -> None:
    """Answer QUESTION from the rulebook, citing the clause it comes from.

    Example: rulebook ask "年假可以留到明年吗？" --json
    """
    from assistant.core import build_assistant
    from assistant.schema import Turn

    settings = _run(lambda: _settings(data_dir))
    turns = [Turn(question=h) for h in (history or [])]
    answer = _run(lambda: build_assistant(settings).answer(question, turns))
    if as_json:
        out.print_json(json.dumps(answer.to_dict(), ensure_ascii=False))
        return
    style = "green" if answer.grounded else "yellow"
    out.print(f"[{style}]{answer.answer}[/{style}]")
    for c in answer.citations:
        when = ""
        if c.effective and c.effective > time.strftime("%Y-%m-%d"):
            when += f"  [yellow]effective {c.effective}[/yellow]"
        if c.updated:
            when += f"  [cyan]updated {c.updated}[/cyan]"
        out.print(f"[bold][{c.n}][/bold] {c.document} › {' › '.join(c.path)}  [dim]({c.source})[/dim]{when}")
    if not answer.grounded and answer.retrieved:
        out.print("[dim]closest clauses: " + "; ".join(
            f"{h.clause.source} {h.clause.label}" for h in answer.retrieved[:3]) + "[/dim]")
    out.print(f"[dim]{answer.timings_ms.get('total', 0):.0f} ms[/dim]")


def metrics_table(metrics: dict[str, dict[str, Any]], title: str) -> Table:
    """One column per case file (and overall), one row per metric: fits a terminal."""
    from eval.metrics import COLUMNS, fmt

    table = Table(title=title)
    table.add_column("metric")
    names = list(metrics)
    for name in names:
        table.add_column(name.removesuffix(".jsonl"), justify="right",
                         style="bold" if name == "overall" else None)
    for col in COLUMNS:
        table.add_row(col.replace("_", " "), *(fmt(metrics[n].get(col)) for n in names))
    if any("composer" in metrics[n] for n in names):  # a model was configured
        for o in ("model", "fallback", "declined", "overruled"):
            table.add_row(f"answers: {o}", *(str(metrics[n].get("composer", {}).get(o, "–")) for n in names))
        table.add_row("model-written share", *(fmt(metrics[n].get("model_written")) for n in names))
        reasons = sorted({k for n in names for k in metrics[n].get("checks", {})})
        for k in reasons:
            table.add_row(f"check: {k}", *(str(metrics[n].get("checks", {}).get(k, 0)) for n in names))
    return table


@app.command("eval")
def evaluate(
    paths: Annotated[list[Path] | None, typer.Argument(help="Case files (.jsonl) or folders of them.")] = None,
    data_dir: DataDir = None,
    as_json: AsJson = False,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write per-case results as JSON.")] = None,
    curated: Annotated[bool, typer.Option(
        "--curated", help="Also run the owners' corrections (DATA_DIR/curated.sqlite) against --data-dir.")] = False,
    use_data_dir: Annotated[bool, typer.Option(
        "--use-data-dir", help="Evaluate every file against --data-dir, ignoring corpora.json.")] = False,
) -> None:
    """Score retrieval, citations and refusals on eval cases (see eval/cases/).

    Example: rulebook eval eval/cases/ --out eval-results.json
    """
    import tempfile

    from assistant.curation import open_curations
    from eval.runner import assistant_factory, run
    from ingest.pipeline import ingest as run_ingest

    settings = _run(lambda: _settings(data_dir))
    make = assistant_factory()
    paths = list(paths or [])
    cleanup: list[Path] = []
    if curated:
        store = open_curations(settings.data_dir)
        cases = store.export_jsonl() if store is not None else ""
        if store is not None:
            store.close()
        if not cases:
            err.print(f"[yellow]no corrections in {settings.data_dir}[/yellow]")
        else:
            folder = Path(tempfile.mkdtemp(prefix="rulebook-curated-"))
            cleanup.append(folder)
            (folder / "curated.jsonl").write_text(cases, encoding="utf-8")
            paths.append(folder / "curated.jsonl")
    if not paths:
        err.print("[red]error:[/red] give case files (or --curated)")
        raise typer.Exit(2)

    def go():  # type: ignore[no-untyped-def]
        with Progress(TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err, transient=True,
                      disable=not err.is_terminal) as bar:
            task = bar.add_task("Evaluating", total=None)

            def ingest_corpus(folder: Path, local: Settings) -> None:
                bar.update(task, description=f"Indexing {folder.name}"[:18])
                run_ingest(folder, local)
                bar.update(task, description="Evaluating")

            return run(paths, settings, make, ingest_corpus,
                       on_case=lambda _r: bar.advance(task), use_data_dir=use_data_dir)

    try:
        result = _run(go)
    finally:
        for folder in cleanup:
            shutil.rmtree(folder, ignore_errors=True)
    data = result.to_dict()
    if out_file:
        out_file.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    if as_json:
        out.print_json(json.dumps(data, ensure_ascii=False))
        return
    out.print(metrics_table(data["metrics"], "Evaluation"))
    for name, reason in data["skipped"].items():
        out.print(f"[yellow]skipped[/yellow] {name}: {reason}")
    if not result.results:
        err.print("[red]error:[/red] no case was evaluated")
        raise typer.Exit(1)


@app.command()
def learn(
    pairs: Annotated[list[Path] | None, typer.Argument(
        help="Case files (.jsonl): each line a question and the clauses that answer it, as in eval/cases/.")] = None,
    data_dir: DataDir = None,
    out_file: Annotated[Path | None, typer.Option(
        "--out", help="Resource to write (default: RULEBOOK_LEARNED_FILE, else DATA_DIR/learned.npz).")] = None,
    memory: Annotated[bool, typer.Option(
        "--memory/--no-memory", help="Remember the questions (helps the clauses they are about).")] = True,
    associations: Annotated[bool, typer.Option(
        "--associations/--no-associations", help="Learn lay word → rule word associations.")] = True,
    adapter: Annotated[bool, typer.Option(
        "--adapter/--no-adapter", help="Learn a map of question vectors towards the clauses that answer them.")] = True,
    curated: Annotated[bool, typer.Option(
        "--curated/--no-curated", help="Also learn from the owners' corrections (DATA_DIR/curated.sqlite).")] = True,
    min_adapter_pairs: Annotated[int, typer.Option(
        min=1, help="Train the question adapter only from this many pairs on (fewer pairs overfit it).")] = 200,
    as_json: AsJson = False,
) -> None:
    """Learn how people ask from (question, clause) pairs; searches then use what was learned.

    Clauses are looked up in the served index by file name and clause label. A re-ingest keeps the resource.

    Example: rulebook learn corrections.jsonl --data-dir .rulebook
    """
    from assistant.learned import learn as run_learn

    settings = _run(lambda: _settings(data_dir))
    report = _run(lambda: run_learn(pairs or [], settings, out_file, memory=memory, associations=associations,
                                    adapter=adapter, curated=curated, min_adapter_pairs=min_adapter_pairs))
    if as_json:
        out.print_json(json.dumps(report.to_dict(), ensure_ascii=False))
        return
    table = Table(title=f"Learned ({report.bytes / 1024:.0f} KB, {report.seconds:.1f} s)")
    table.add_column("")
    table.add_column("count", justify="right")
    for name, value in (("pairs read", report.pairs), ("pairs learned", report.learned_pairs),
                        ("pairs left out", len(report.left_out)),
                        ("questions remembered", report.memory_questions),
                        ("clauses remembered", report.clauses_remembered),
                        ("question adapter", "yes" if report.adapter else f"no ({report.adapter_skipped})"
                         if report.adapter_skipped else "no"),
                        ("lay words", report.lay_words), ("word associations", report.associations)):
        table.add_row(name, str(value))
    out.print(table)
    out.print(f"wrote {report.out}")
    for p in report.left_out[:10]:
        keys = "; ".join(f"{s} {c}" for s, c in p["expected"])
        out.print(f"[yellow]left out[/yellow] {p['question'][:40]}: no clause {keys} in the index")
    if len(report.left_out) > 10:
        out.print(f"[yellow]… and {len(report.left_out) - 10} more left out[/yellow]")


@app.command()
def serve(
    data_dir: DataDir = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on (RULEBOOK_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (RULEBOOK_PORT).")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes, each serving the current "
                                         "index (uvicorn workers); 1 = one process.")] = 1,
) -> None:
    """Serve the HTTP API and the chat page.

    Example: rulebook serve --port 8000   (then open http://127.0.0.1:8000/)
    """
    try:
        import uvicorn

        from assistant.adapters.web import create_app
    except ImportError:
        err.print("[red]error:[/red] the web server is not installed: " + escape("pip install -e '.[web]'"))
        raise typer.Exit(1) from None
    settings = _run(lambda: load_settings(data_dir=data_dir, host=host, port=port))
    # X-Forwarded-For is believed only from the proxies named in RULEBOOK_FORWARDED_ALLOW_IPS: from
    # anyone else a fresh header per request would be a fresh rate-limit bucket.
    proxies = [ip.strip() for ip in settings.forwarded_allow_ips.split(",") if ip.strip()]
    options: dict[str, Any] = {"host": settings.host, "port": settings.port, "log_level": "warning",
                               "proxy_headers": bool(proxies), "forwarded_allow_ips": proxies or None}
    shown = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    where = f"[bold]http://{shown}:{settings.port}/[/bold]  (API docs: http://{shown}:{settings.port}/docs)"
    if workers > 1:
        # Each worker is a fresh process that builds the app from the environment: hand it the
        # settings resolved here (command-line options included).
        import os

        os.environ["RULEBOOK_DATA_DIR"] = str(Path(settings.data_dir).resolve())
        # Requests run in parallel across workers: one embedder thread each, rather than every worker
        # starting a thread per core and N workers fighting over the same cores.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        out.print(f"rulebook is serving on {where} with {workers} workers")
        uvicorn.run("assistant.adapters.web:app_from_environment", factory=True, workers=workers, **options)
        return
    web_app = _run(lambda: create_app(settings))
    ok, detail = web_app.state.assistant.ready()
    if not ok:
        err.print(f"[yellow]warning:[/yellow] {detail} (the server starts; /readyz says 503 until then)")
    out.print(f"rulebook is serving on {where}")
    uvicorn.run(web_app, **options)


@app.command()
def slack(data_dir: DataDir = None) -> None:
    """Answer in Slack over Socket Mode (SLACK_APP_TOKEN, SLACK_BOT_TOKEN; no public URL needed).

    Example: SLACK_APP_TOKEN=xapp-… SLACK_BOT_TOKEN=xoxb-… rulebook slack
    """
    settings = _run(lambda: load_settings(data_dir=data_dir))
    missing = [name for name, value in (("SLACK_APP_TOKEN", settings.slack_app_token),
                                        ("SLACK_BOT_TOKEN", settings.slack_bot_token)) if not value]
    if missing:
        err.print(f"[red]error:[/red] set {' and '.join(missing)} (see README: Connecting Slack)")
        raise typer.Exit(1)
    try:
        from assistant.adapters.slack import run_socket_mode
    except ImportError:
        err.print("[red]error:[/red] Slack support is not installed: " + escape("pip install -e '.[slack]'"))
        raise typer.Exit(1) from None
    out.print("rulebook is connecting to Slack over Socket Mode (Ctrl+C to stop)")
    _run(lambda: run_socket_mode(settings))


@app.command()
def changes(
    since: Annotated[str | None, typer.Option(
        "--since", help="A date (YYYY-MM-DD) or a generation (gen-000012); default: the previous generation.")] = None,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """What changed in the rulebook: added, removed, modified and moved clauses, by document.

    Example: rulebook changes --since 2026-11-01
    """
    from assistant.changes import changes as compute
    from assistant.history import ClauseHistory
    from assistant.store import Layout

    settings = _run(lambda: _settings(data_dir))
    history = ClauseHistory(Layout(settings.data_dir).history)
    try:
        result = _run(lambda: compute(history, since))
    finally:
        history.close()
    if as_json:
        out.print_json(json.dumps(result, ensure_ascii=False))
        return
    items = result["changes"]
    out.print(f"[bold]{len(items)} changes[/bold] from {escape(result['since'])} to {escape(result['until'])}")
    marks = {"added": "[green]+ added[/green]", "removed": "[red]- removed[/red]",
             "modified": "[yellow]~ modified[/yellow]", "moved": "[cyan]→ moved[/cyan]"}
    document = None
    for c in items:
        if c["document"] != document:
            document = c["document"]
            out.print(f"\n[bold]{escape(document)}[/bold]  [dim]({escape(c['source'])})[/dim]")
        where = escape(c["clause"])
        if c["kind"] == "moved":
            old = escape(f"{c['old_source']} {c['old_clause']}" if c["old_source"] != c["source"] else c["old_clause"])
            where = f"{old} → {where}"
        out.print(f"  {marks[c['kind']]} {where}")
        text = c.get("diff") or (c["new_text"] if c["kind"] == "added" else c["old_text"] if c["kind"] == "removed"
                                 else None)
        if text:
            out.print("    " + escape(text[:400]).replace("\n", "\n    "))


@app.command()
def audit(
    answer_id: Annotated[str, typer.Argument(help="The answer_id an answer was given with.")],
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Show an earlier answer with the exact clause text it quoted then, and whether it changed since.

    Example: rulebook audit 3f2a…
    """
    from assistant.adapters.web import records_path
    from assistant.changes import audit as compute
    from assistant.history import ClauseHistory
    from assistant.records import Records
    from assistant.store import Layout

    settings = _run(lambda: _settings(data_dir))
    records = Records(records_path(settings))
    payload, meta = records.answer_payload(answer_id), records.answer_meta(answer_id)
    if payload is None or meta is None:
        err.print(f"[red]error:[/red] no answer with id {escape(answer_id)}")
        raise typer.Exit(1)
    history = ClauseHistory(Layout(settings.data_dir).history)
    try:
        result = compute(answer_id, payload, meta, records.citations(answer_id), history)
    finally:
        history.close()
        records.close()
    if as_json:
        out.print_json(json.dumps(result, ensure_ascii=False))
        return
    import datetime as dt

    asked = dt.datetime.fromtimestamp(float(result["asked_at"])).strftime("%Y-%m-%d %H:%M")
    out.print(f"[bold]{escape(str(result['question']))}[/bold]  [dim]({asked}, {result['channel']}, "
              f"{result['generation']})[/dim]")
    out.print(escape(str(result["answer"])))
    for c in result["citations"]:
        style = {"unchanged": "green", "changed": "yellow", "moved": "cyan"}.get(c["status"], "red")
        out.print(f"\n[bold][{c['n']}][/bold] {escape(c['source'])} {escape(c['clause'])}  "
                  f"[{style}]{c['status']}[/{style}]")
        if c["text_then"]:
            out.print("  then: " + escape(c["text_then"]).replace("\n", "\n        "))
        if c.get("diff"):
            out.print("  since: " + escape(c["diff"]))


@app.command()
def records(
    refused: Annotated[bool, typer.Option("--refused", help="Only questions the assistant refused.")] = False,
    down: Annotated[bool, typer.Option("--down", help="Only answers rated 👎.")] = False,
    since: Annotated[str | None, typer.Option("--since", help="From this date on (YYYY-MM-DD).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many, newest first.")] = 200,
    data_dir: DataDir = None,
    as_json: AsJson = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV (question, grounded, channel, …).")] = False,
) -> None:
    """What staff asked and what they were told, newest first (from records.sqlite).

    Example: rulebook records --refused --since 2026-11-01 --csv > refused.csv
    """
    import csv
    import datetime as dt

    from assistant.adapters.web import records_path
    from assistant.records import Records

    settings = _run(lambda: _settings(data_dir))
    try:
        start = dt.datetime.strptime(since, "%Y-%m-%d").timestamp() if since else None
    except ValueError:
        err.print(f"[red]error:[/red] --since expects YYYY-MM-DD, got {escape(since or '')}")
        raise typer.Exit(1) from None
    store = Records(records_path(settings))
    try:
        items, _ = store.questions(refused=True if refused else None, down=True if down else None, since=start,
                                   limit=limit)
    finally:
        store.close()
    if as_json:
        out.print_json(json.dumps({"items": items}, ensure_ascii=False))
        return
    if as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(["created_at", "channel", "question", "grounded", "citations", "feedback", "answer_id"])
        for i in items:
            writer.writerow([dt.datetime.fromtimestamp(float(i["created_at"])).isoformat(timespec="seconds"),
                             i["channel"], i["question"], i["grounded"],
                             "; ".join(f"{c['source']} {c['clause']}" for c in i["citations"]),
                             " ".join(f["rating"] for f in i["feedback"]), i["answer_id"]])
        return
    table = Table(title=f"{len(items)} questions")
    for col in ("when", "channel", "question", "answer", "feedback"):
        table.add_column(col)
    for i in items:
        cited = "; ".join(f"{c['source']} {c['clause']}" for c in i["citations"]) or "[yellow]refused[/yellow]"
        table.add_row(dt.datetime.fromtimestamp(float(i["created_at"])).strftime("%m-%d %H:%M"), str(i["channel"]),
                      escape(str(i["question"])), cited, " ".join("👍" if f["rating"] == "up" else "👎"
                                                                   for f in i["feedback"]))
    out.print(table)


@app.command()
def gaps(
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """What staff ask that the rulebook does not answer: refused and 👎 questions grouped by meaning.

    Example: rulebook gaps
    """
    from assistant.adapters.web import records_path
    from assistant.embeddings import make_embedder
    from assistant.gaps import group_questions
    from assistant.records import Records

    settings = _run(lambda: _settings(data_dir))
    store = Records(records_path(settings))
    try:
        items = store.questions(refused=True, limit=5000)[0] + store.questions(refused=False, down=True, limit=5000)[0]
    finally:
        store.close()
    items.sort(key=lambda i: float(i["created_at"]))
    embedder = _run(lambda: make_embedder(settings.embedding))
    groups = group_questions(items, embedder.query_array)
    if as_json:
        out.print_json(json.dumps({"groups": groups, "questions": len(items)}, ensure_ascii=False))
        return
    out.print(f"[bold]{len(groups)} groups[/bold] from {len(items)} refused or 👎 questions")
    for g in groups:
        out.print(f"\n[bold]{g['size']}×[/bold] (refused {g['refused']}, 👎 {g['down']})")
        for q in g["questions"]:
            out.print("  " + escape(q))


@app.command()
def curate(
    question: Annotated[str | None, typer.Argument(help="The question as staff asked it.")] = None,
    clause: Annotated[list[str] | None, typer.Option(
        "--clause", help="A clause that answers it: its id, or \"FILE LABEL\" (e.g. \"考勤与休假制度.md 第十八条\"); "
        "repeat for several.")] = None,
    not_covered: Annotated[bool, typer.Option("--not-covered", help="The rulebook does not cover it.")] = False,
    contact: Annotated[str | None, typer.Option(help="Whom to ask instead (with --not-covered).")] = None,
    note: Annotated[str | None, typer.Option(help="Why, for the other owners.")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the corrections.")] = False,
    delete: Annotated[str | None, typer.Option("--delete", help="Delete the correction with this id.")] = None,
    export: Annotated[Path | None, typer.Option(
        "--export", help="Write the corrections as eval cases (.jsonl; `-` for stdout).")] = None,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Correct the assistant: the clause(s) that answer a question, or "not covered".

    Close paraphrases of a corrected question are answered as corrected at once; `rulebook learn`
    learns from the corrections and `rulebook eval --curated` checks them.

    Example: rulebook curate "年假能留到明年吗" --clause "考勤与休假制度.md 第十八条"
    """
    from assistant.curation import CurationError, clause_row, find_clause, open_curations
    from assistant.store import Layout, read_clauses

    settings = _run(lambda: _settings(data_dir))
    store = _run(lambda: open_curations(settings.data_dir, create=True))
    try:
        if list_ or export is not None or delete:
            if delete:
                if not store.delete(delete):
                    err.print(f"[red]error:[/red] no correction {escape(delete)}")
                    raise typer.Exit(1)
                out.print(f"deleted {escape(delete)}")
            if export is not None:
                lines = store.export_jsonl()
                if str(export) == "-":
                    sys.stdout.write(lines)
                else:
                    export.write_text(lines, encoding="utf-8")
                    err.print(f"wrote {len(store.items())} cases to {export}")
            if list_:
                items = [c.to_dict() for c in store.items()]
                if as_json:
                    out.print_json(json.dumps({"items": items}, ensure_ascii=False))
                    return
                for c in items:
                    target = "; ".join(f"{x['source']} {x['clause']}" for x in c["clauses"]) or (
                        "not covered" + (f" → {c['contact']}" if c["contact"] else ""))
                    out.print(f"{c['id'][:12]}  {escape(c['question'])}  →  {escape(target)}")
            return
        if not question or (not clause and not not_covered) or (clause and not_covered):
            err.print("[red]error:[/red] give a QUESTION and either --clause (one or more) or --not-covered")
            raise typer.Exit(2)
        rows = []
        if clause:
            layout = Layout(settings.data_dir)
            current = layout.current()
            if current is None:
                err.print("[red]error:[/red] no index yet: run `rulebook ingest DIR` first")
                raise typer.Exit(1)
            clauses = read_clauses(layout.gen_dir(current) / "index.sqlite")
            for ref in clause:
                found = find_clause(clauses, ref)
                if found is None:
                    err.print(f"[red]error:[/red] no clause {escape(ref)} in the index (give its id, or "
                              "\"FILE LABEL\" as `rulebook ask --json` shows them)")
                    raise typer.Exit(1)
                rows.append(clause_row(found))
        try:
            item = store.add(question, "not_covered" if not_covered else "clauses", rows, contact=contact,
                             note=note, author="cli")
        except CurationError as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}")
            raise typer.Exit(1) from None
        if as_json:
            out.print_json(json.dumps(item.to_dict(), ensure_ascii=False))
            return
        target = "; ".join(f"{x['source']} {x['clause']}" for x in rows) or "not covered"
        out.print(f"curated {item.curation_id[:12]}: {escape(item.question)} → {escape(target)}")
    finally:
        store.close()


@app.command()
def feishu(data_dir: DataDir = None) -> None:
    """Answer in Feishu / Lark over its long connection (FEISHU_APP_ID, FEISHU_APP_SECRET; no public URL).

    Example: FEISHU_APP_ID=cli_… FEISHU_APP_SECRET=… rulebook feishu
    """
    settings = _run(lambda: load_settings(data_dir=data_dir))
    missing = [name for name, value in (("FEISHU_APP_ID", settings.feishu_app_id),
                                        ("FEISHU_APP_SECRET", settings.feishu_app_secret)) if not value]
    if missing:
        err.print(f"[red]error:[/red] set {' and '.join(missing)} (see README: Connecting Feishu)")
        raise typer.Exit(1)
    try:
        from assistant.adapters.feishu import run_long_connection
    except ImportError:
        err.print("[red]error:[/red] Feishu support is not installed: " + escape("pip install -e '.[feishu]'"))
        raise typer.Exit(1) from None
    out.print("rulebook is connecting to Feishu over its long connection (Ctrl+C to stop)")
    _run(lambda: run_long_connection(settings))


@app.command()
def dingtalk(data_dir: DataDir = None) -> None:
    """Answer in DingTalk over Stream mode (DINGTALK_CLIENT_ID, DINGTALK_CLIENT_SECRET; no public URL).

    Example: DINGTALK_CLIENT_ID=ding… DINGTALK_CLIENT_SECRET=… rulebook dingtalk
    """
    settings = _run(lambda: load_settings(data_dir=data_dir))
    missing = [name for name, value in (("DINGTALK_CLIENT_ID", settings.dingtalk_client_id),
                                        ("DINGTALK_CLIENT_SECRET", settings.dingtalk_client_secret)) if not value]
    if missing:
        err.print(f"[red]error:[/red] set {' and '.join(missing)} (see README: Connecting DingTalk)")
        raise typer.Exit(1)
    try:
        from assistant.adapters.dingtalk import run_stream_mode
    except ImportError:
        err.print("[red]error:[/red] DingTalk support is not installed: "
                  + escape("pip install -e '.[dingtalk]'"))
        raise typer.Exit(1) from None
    out.print("rulebook is connecting to DingTalk over Stream mode (Ctrl+C to stop)")
    _run(lambda: run_stream_mode(settings))


def main() -> None:
    import os

    level = os.environ.get("RULEBOOK_LOG", "warning").upper()
    logging.basicConfig(level=getattr(logging, level, logging.WARNING), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
