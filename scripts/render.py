"""What the `alvar` commands print: rich tables and lines on standard output, notes and errors on standard error.

The commands compute; these functions only print. Texts that come from data (file names, task texts, job
reasons) are escaped, so rich markup characters in them print as they are.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from alvar.experiments.evaluate import Evaluation
    from alvar.generator.generation import Generation
    from alvar.generator.templates import VariationPrompt
    from alvar.loop.export import Export, GenerationExport
    from alvar.loop.initialize import InitOutcome
    from alvar.loop.jobs import JobRow
    from alvar.loop.offline import TrainOutcome
    from alvar.loop.reconcile import Reconciliation
    from alvar.loop.selection import SelectionRun
    from alvar.loop.stack import StackState
    from alvar.loop.status import Progress, StackStatus
    from alvar.settings import Settings

console = Console()
notes = Console(stderr=True, soft_wrap=True)


def error(message: str) -> None:
    notes.print(f"[red]error:[/] {escape(message)}", highlight=False)


def say(line: str) -> None:
    """Progress of a long command, as plain text (file names may hold rich markup characters)."""
    console.print(escape(line))


def unwrapped(text: str) -> None:
    """A line that stays one line whatever the terminal's width (paths and versions a person copies)."""
    console.print(escape(text), soft_wrap=True)


def line(text: str) -> None:
    console.print(text)


def note(text: str) -> None:
    notes.print(text, highlight=False)


def json_document(document: Any, indent: int | None = 2, ensure_ascii: bool = True) -> None:
    print(json.dumps(document, indent=indent, ensure_ascii=ensure_ascii))


def written(paths: Iterable[Path]) -> None:
    console.print(f"-> {', '.join(str(path) for path in paths)}")


# --- the stack ----------------------------------------------------------------------------------------------


def llm_note(settings: Settings, configured: bool) -> None:
    if configured:
        console.print(f"LLM: {settings.llm_model} at {settings.openai_base_url or 'api.openai.com'}")
    else:
        console.print("[yellow]No LLM configured[/]: generation jobs wait in their queue. Set OPENAI_BASE_URL "
                      "(any OpenAI-compatible endpoint) and/or OPENAI_API_KEY, then `alvar down` and `alvar up`.")


def stack_up(state: StackState, outcome: InitOutcome, data_dir: Path) -> None:
    table = Table(title="alvar is up", show_header=False)
    table.add_row("Label Studio", f"{state.label_studio_url}/projects/{state.project_id}")
    table.add_row("login", f"{state.username} / {state.password}")
    table.add_row("ML backend", state.backend_url)
    table.add_row("database", state.database)
    table.add_row("model", outcome.model_version or "none yet")
    table.add_row("logs", str(data_dir.resolve() / "logs"))
    console.print(table)


def next_steps(state: StackState, outcome: InitOutcome, data_dir: Path) -> None:
    from alvar.labelstudio.task_kinds import KINDS

    where = f"--data-dir {data_dir}"
    if outcome.batch is not None or outcome.model_version is not None:
        console.print(f"Next: log in, {KINDS[outcome.kind].next_step}. Then: `alvar select --project "
                      f"{state.project_id} {where}` for the next batch, `alvar status {where}` to see progress.")
    console.print(f"Stop everything with: alvar down {where}")


def initialized(outcome: InitOutcome, label_studio_url: str) -> None:
    if not outcome.steps:
        console.print("nothing to do: the project is set up")
    console.print(f"project {outcome.project_id}: {label_studio_url}/projects/{outcome.project_id}, "
                  f"model {outcome.model_version or 'none yet'}")


def _progress(progress: Progress | None) -> str:
    return "-" if progress is None else f"{progress.done} / {progress.total}"


def stack_status(result: StackStatus) -> None:
    services = Table(title=f"alvar stack in {result.data_dir}")
    for column in ("service", "state", "pid", "where"):
        services.add_column(column)
    for name, service in result.services.items():
        services.add_row(name, "[green]up[/]" if service.up else "[red]down[/]", str(service.pid or "-"),
                         escape(service.where))
    console.print(services)
    overview = Table(show_header=False)
    overview.add_row("project", result.project_url or "-")
    overview.add_row("model version", f"{result.model_version or '-'} (backend serves {result.serving_version or '-'})")
    overview.add_row(f"batch {result.batch or '-'} labeled", _progress(result.batch_progress))
    if result.generation is not None:
        drafts = result.generation
        overview.add_row("teacher drafts", f"{drafts.drafted} drafted, {drafts.screened_out} screened out "
                         f"({drafts.tasks} tasks)")
        overview.add_row("reviews", ", ".join(f"{verdict} {count}" for verdict, count in drafts.reviews.items()))
        overview.add_row("student G", drafts.student_version or "none yet")
        overview.add_row("R (attribute model)", drafts.attribute_model or "not trained yet")
    else:
        overview.add_row("variations reviewed", _progress(result.verification))
    if result.label_cover is not None:
        overview.add_row("clusters", result.label_cover.line())
    for queue, counts in result.queues.items():
        overview.add_row(f"queue {queue}", ", ".join(f"{state} {count}" for state, count in counts.items()))
    usage = result.llm
    tokens = usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
    overview.add_row("LLM", f"{usage['model']}: {tokens} tokens, ~${usage.get('cost_usd', 0.0):.4f}"
                     if usage["configured"] else "none configured")
    console.print(overview)
    workers([asdict(worker) for worker in result.workers])
    for job in result.failed_jobs:
        console.print(f"[red]failed[/] {job['queue']} {job['id']}: {escape(job['reason'])}")


def stopped(names: Sequence[str]) -> None:
    console.print(f"stopped: {', '.join(names) if names else 'nothing was running'}")


# --- queues and workers -------------------------------------------------------------------------------------


def workers(rows: list[dict[str, Any]]) -> None:
    table = Table(title="RQ workers")
    for column in ("worker", "queues", "state", "job", "last heartbeat", "live"):
        table.add_column(column)
    for worker in rows:
        age = worker["heartbeat_age_s"]
        table.add_row(escape(worker["name"]), ", ".join(worker["queues"]), worker["state"], worker["job"] or "-",
                      "-" if age is None else f"{age:.0f} s ago", "[green]yes[/]" if worker["live"] else "[red]no[/]")
    console.print(table)


def requeued(rows: Sequence[JobRow]) -> None:
    for row in rows:
        console.print(f"requeued {row.queue} {row.id}: {escape(row.description)} (had failed: "
                      f"{escape(row.reason)})")
    console.print(f"{len(rows)} failed jobs requeued")


def jobs(report: dict[str, Any]) -> None:
    counts = Table(title="queues")
    counts.add_column("queue")
    for state in ("queued", "running", "retrying", "failed", "finished"):
        counts.add_column(state, justify="right")
    for queue, by_state in report["counts"].items():
        counts.add_row(queue, *(str(count) for count in by_state.values()))
    console.print(counts)
    if report["jobs"]:
        table = Table(title="jobs (newest first)")
        for column in ("queue", "state", "job", "description", "reason / outcome", "tokens", "cost $"):
            table.add_column(column)
        for row in report["jobs"]:
            table.add_row(row["queue"], row["state"], row["id"], escape(row["description"]), escape(row["reason"]),
                          str(row["tokens"]), f"{row['cost_usd']:.5f}")
        console.print(table)
    workers(report["workers"])
    usage = report["llm_usage"]
    console.print(f"LLM: {usage['requests']} requests ({usage['cached']} cached), "
                  f"{usage['prompt_tokens'] + usage['completion_tokens']} tokens, ~${usage['cost_usd']:.4f}")


def reconciliation(found: Sequence[Reconciliation]) -> None:
    table = Table(title="reconciliation")
    for column in ("project", "labelled sources", "generation queued", "already pending", "statuses fixed",
                   "human labels / trained on", "training", "error"):
        table.add_column(column)
    for item in found:
        training = (item.training or {}).get("training", "-")
        trained_on = "-" if item.trained_on is None else str(item.trained_on)
        table.add_row(str(item.project), str(item.sources), str(len(item.queued)), str(item.pending),
                      str(item.restated), f"{item.human_labels} / {trained_on}", training, escape(item.error or ""))
    console.print(table)


# --- models -------------------------------------------------------------------------------------------------


def trained(outcome: TrainOutcome, model_dir: Path) -> None:
    table = Table(title=f"version {outcome.version}")
    table.add_column("class")
    table.add_column("examples", justify="right")
    for label, count in outcome.class_counts.items():
        table.add_row(label, str(count))
    console.print(table)
    console.print(f"trained on {outcome.n_examples} examples, final loss {outcome.training_loss:.4f}; "
                  f"saved under {model_dir / outcome.version}")
    if outcome.metrics:
        console.print(" ".join(f"{name} {value:.4f}" for name, value in outcome.metrics.items()))


def predicted(count: int, version: str, out: Path | None, scores: dict[str, float]) -> None:
    if out is not None:
        console.print(f"scored {count} texts with version {version} -> {out}")
    if scores:
        notes.print(" ".join(f"{name} {value:.4f}" for name, value in scores.items()))


def evaluation(result: Evaluation, test_name: str, seeds: int) -> None:
    table = Table(title=f"macro-F1 on {test_name} (mean ± sd over {seeds} seeds)")
    for column in ("model", "accuracy %", "macro-F1 %", "error-rate std %"):
        table.add_column(column)
    for row in result.summary():
        table.add_row(row["model"], *(f"{100 * row[f'{m}_mean']:.1f} ± {100 * row[f'{m}_sd']:.1f}"
                                      for m in ("accuracy", "macro_f1", "error_rate_std")))
    console.print(table)
    for text in result.notes:
        notes.print(f"[yellow]note:[/] {escape(text)}")


def simulation_report(out: Path) -> None:
    console.print((out / "report.md").read_text())


# --- data ---------------------------------------------------------------------------------------------------


def clusters(run: SelectionRun, rows: list[tuple[int, int, int, float]]) -> None:
    if not rows:
        return
    table = Table(title=f"clusters ({run.strategy}, model {run.model_version})")
    for column in ("cluster", "size", "picked", "mean entropy of picks"):
        table.add_column(column, justify="right")
    for cluster, size, picked, mean in rows:
        table.add_row(str(cluster), str(size), str(picked), "-" if picked == 0 else f"{mean:.3f}")
    console.print(table)


def exported(export: Export | GenerationExport, paths: Sequence[Path]) -> None:
    console.print(f"{export.summary()} -> {', '.join(str(path) for path in paths)}")


def variations(generation: Generation, prompt: VariationPrompt) -> None:
    table = Table(title=f"{len(generation.variations)} variations ({prompt.relation}, label "
                        f"{prompt.variation_label}, {generation.model})")
    table.add_column("#", justify="right")
    table.add_column("variation")
    for number, variation in enumerate(generation.variations, start=1):
        table.add_row(str(number), escape(variation))
    console.print(table)


def generation_cost(generation: Generation, wanted: int) -> None:
    usage = generation.usage
    dropped = dict(generation.dropped) or "none"
    notes.print(f"{usage.requests} requests ({usage.cached} cached), {usage.prompt_tokens} + "
                f"{usage.completion_tokens} tokens, ~${usage.cost_usd:.5f}; dropped: {dropped}", highlight=False)
    if generation.shortfall:
        notes.print(f"[yellow]only {len(generation.variations)} of {wanted} variations passed screening[/]")
