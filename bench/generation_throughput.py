"""Generation throughput on Label Studio with SQLite vs PostgreSQL, the import lock, and 1/2/4 worker processes.

    python bench/generation_throughput.py [--latency 1.0] [--concurrency 1 4 16] [--jobs-per-slot 4]
        [--processes 1 2 4] [--imports 8] [--lock-rounds 2] [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

Starts an embedded Redis in a temporary dir and the loopback chat-completions server (tests/chat_server.py)
answering every request after --latency seconds; then, for each back end, a Label Studio: on SQLite in the
temporary dir, and on a fresh PostgreSQL database (``gb_<pid>``, created on the --postgres server and dropped at
the end). In one run it prints three tables:

1. jobs/s at each concurrency c (one ``alvar worker --queues generation --concurrency c --burst`` process), for
   - "full": the job the webhook queues, for freshly annotated tasks: read the task, ask the LLM, screen, import
     k pre-labelled tasks into Label Studio (under the import lock, as shipped), look for stale ones; on SQLite and
     on PostgreSQL, with the ratio PostgreSQL / SQLite;
   - "worker": the same LLM request and screening with Label Studio left out (``llm_only_job`` below), which
     shows what the worker itself sustains (no back end involved: measured once).
   jobs/s is measured with RQ's own timestamps, after the first c jobs (warm-up: connections, first requests),
   from the first measured job's start to the last one's end. Target: >= 0.8 x c / latency jobs/s. Beside it,
   the CPU seconds Label Studio's process (and its children) spent per full job while the worker ran: with
   Label Studio's single-process server (``label-studio start`` runs Django's runserver), jobs/s cannot pass
   about 1 / that number, whatever the database.
2. the import lock (:func:`alvar.generator.source_state.import_lock`): --imports imports of k variations with
   their pre-labels (the request :func:`alvar.generator.variation_tasks.build_tasks` makes) sent at the same
   moment through the SDK, as many jobs would, into one project, with and without the lock, on each back end:
   how many tasks lost a pre-label, and what the lock costs (imports/s, and the longest wait of one import).
3. on PostgreSQL, the full job with 1, 2 and 4 worker processes (``alvar worker --processes P --concurrency
   C/P``) holding the same total C in flight (the largest --concurrency).

Shrink a run with --jobs-per-slot (measured jobs per in-flight slot), --lock-rounds, --backends, --kinds. Each
worker run pays the worker's start (15-40 s here), two Label Studio starts ~1 min each: on this 2-core machine
shared with other work (load 6-10) the default run took 17 min, ``--kinds full --concurrency 4 16 --processes 1 4
--jobs-per-slot 3 --lock-rounds 1`` about 8 min.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from label_studio_sdk import LabelStudio
from redis import Redis
from rich.console import Console
from rich.table import Table
from rq import Queue
from rq.job import Job

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from concurrent_imports import CONTROL, ImportRound, concurrent_imports, imports_per_second  # noqa: E402

from alvar.datafiles import Example, read_dataset  # noqa: E402
from alvar.generator.generation import generate  # noqa: E402
from alvar.generator.jobs import generate_variations, generation_key  # noqa: E402
from alvar.generator.templates import VariationPrompt  # noqa: E402
from alvar.generator.worker_resources import current_resources  # noqa: E402
from alvar.label_config import load  # noqa: E402
from alvar.loop import label_studio_server, services  # noqa: E402
from alvar.loop.label_studio_database import create_database, drop_database, redacted  # noqa: E402
from alvar.loop.label_studio_server import LabelStudioServer  # noqa: E402
from alvar.loop.project import create_project, import_pool  # noqa: E402
from alvar.settings import GENERATION_QUEUE, load_settings  # noqa: E402
from tests.chat_server import ChatServer  # noqa: E402

DATASETS = Path(__file__).resolve().parents[2] / "shared/datasets/active-learning-safety"
REPO = Path(__file__).resolve().parents[1]
SQLITE, POSTGRESQL = "sqlite", "postgresql"
BACKEND_NAMES = {SQLITE: "SQLite", POSTGRESQL: "PostgreSQL"}


def llm_only_job(text: str, label: str) -> int:
    """A generation job without Label Studio: prompt, LLM request, parsing and screening."""
    resources = current_resources()
    settings = resources.settings
    prompt = VariationPrompt(text=text, label=label, k=settings.variations, max_chars=settings.max_variation_chars)
    return len(generate(prompt, resources.chat).variations)


@dataclass
class Bench:
    """What every measurement shares: the LLM, Redis, the worker's environment and the examples to draw from."""

    root: Path
    env: dict[str, str]
    connection: Redis
    examples: Iterator[Example]
    k: int
    label_studio_cpu: dict[tuple[str, int, int], float] = field(default_factory=dict)

    @property
    def queue(self) -> Queue:
        return Queue(GENERATION_QUEUE, connection=self.connection)

    def take(self, count: int) -> list[Example]:
        return [next(self.examples) for _ in range(count)]


def annotated_jobs(client: LabelStudio, project_id: int, examples: list[Example], queue: Queue) -> list[str]:
    """Annotate each example's task as a person would and queue its generation job, as the webhook does."""
    job_ids = []
    for task_id, example in zip(import_pool(client, project_id, examples), examples):
        label = example.label or CONTROL.labels[0]
        annotation = client.annotations.create(id=task_id, result=CONTROL.choice_result(label), was_cancelled=False)
        job_id = generation_key(project_id, task_id, label)
        queue.enqueue(generate_variations, project_id, task_id, label, example.text, job_id=job_id,
                      job_timeout=300, result_ttl=3600, meta={"annotation": int(annotation.id)})
        job_ids.append(job_id)
    return job_ids


def run(bench: Bench, label_studio: dict[str, str], job_ids: list[str], name: str, concurrency: int,
        processes: int = 1) -> float:
    """Serve ``job_ids`` with one `alvar worker --burst` (``processes`` x ``concurrency`` in flight); its jobs/s."""
    log = bench.root / f"worker-{name}.log"
    several = ["--processes", str(processes)] if processes > 1 else []
    subprocess.run([str(Path(sys.executable).with_name("alvar")), "worker", "--queues", "generation", *several,
                    "--concurrency", str(concurrency), "--burst", "--name", f"bench-{name}"],
                   env={**os.environ, **bench.env, **label_studio, "PYTHONPATH": str(REPO)}, check=True,
                   stdout=log.open("w"), stderr=subprocess.STDOUT)
    jobs = [job for job in Job.fetch_many(job_ids, connection=bench.connection) if job is not None]
    failed = [job for job in jobs if job.get_status() != "finished"]
    if failed or len(jobs) != len(job_ids):
        reasons = sorted({(job.latest_result().exc_string or "").strip().splitlines()[-1] if job.latest_result()
                          else str(job.get_status()) for job in failed})
        raise SystemExit(f"{len(job_ids) - len(jobs) + len(failed)} jobs did not finish ({reasons}); see {log}")
    measured = sorted(jobs, key=lambda job: job.started_at)[concurrency * processes:]
    span = max(job.ended_at for job in measured) - min(job.started_at for job in measured)
    return len(measured) / span.total_seconds()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process and its children have used so far."""
    process = psutil.Process(pid)
    return sum(sum(member.cpu_times()[:2]) for member in [process, *process.children(recursive=True)])


def full_rate(bench: Bench, server: LabelStudioServer, backend: str, in_flight: int, per_slot: int,
              processes: int = 1) -> tuple[int, float]:
    """jobs/s of the full job on a fresh project with ``in_flight`` jobs at once over ``processes`` processes;
    Label Studio's CPU seconds per job meanwhile go to ``bench.label_studio_cpu``."""
    client = LabelStudio(base_url=server.url, api_key=server.token, timeout=300)
    batch = bench.take(per_slot * in_flight + in_flight)
    project_id = create_project(client, f"throughput {backend} c={in_flight} p={processes}", load("annotate"))
    job_ids = annotated_jobs(client, project_id, batch, bench.queue)
    before = cpu_seconds(server.pid)
    rate = run(bench, {"LABEL_STUDIO_URL": server.url, "LABEL_STUDIO_API_KEY": server.token}, job_ids,
               f"full-{backend}-c{in_flight}-p{processes}", in_flight // processes, processes)
    bench.label_studio_cpu[backend, in_flight, processes] = (cpu_seconds(server.pid) - before) / len(batch)
    return len(batch), rate


def worker_rate(bench: Bench, in_flight: int, per_slot: int) -> tuple[int, float]:
    """jobs/s of the LLM-only job (no Label Studio) with ``in_flight`` jobs at once."""
    batch = bench.take(per_slot * in_flight + in_flight)
    job_ids = [bench.queue.enqueue("bench.generation_throughput.llm_only_job", example.text,
                                   example.label or "discard", result_ttl=3600).id for example in batch]
    return len(batch), run(bench, {}, job_ids, f"worker-c{in_flight}", in_flight)


@contextmanager
def label_studio_on(bench: Bench, backend: str, admin_url: str) -> Iterator[LabelStudioServer]:
    """A Label Studio on ``backend``: SQLite in the bench's dir, or a fresh PostgreSQL database dropped after."""
    data_dir = bench.root / f"ls-{backend}"
    name = f"gb_{os.getpid()}"
    database = create_database(admin_url, name) if backend == POSTGRESQL else None
    began = time.perf_counter()
    try:
        server = label_studio_server.start_label_studio(data_dir, free_port(), "bench@alvar.local", "bench-password",
                                             "bench-token-0123456789", load_settings().label_studio_venv,
                                             database=database)
        print(f"Label Studio on {BACKEND_NAMES[backend]}"
              f"{' (' + redacted(database) + ')' if database else ''}: ready in {time.perf_counter() - began:.0f} s",
              flush=True)
        yield server
    finally:
        services.stop_process(data_dir, "label-studio")
        if database is not None:
            drop_database(admin_url, name)


def timed(what: str, measure: Callable[..., tuple[int, float]], *args: object) -> tuple[int, float]:
    """``measure(*args)`` (jobs, jobs/s), printed as it comes with how long it took."""
    began = time.perf_counter()
    jobs, rate = measure(*args)
    print(f"  {what}: {jobs} jobs, {rate:.2f} jobs/s ({time.perf_counter() - began:.0f} s)", flush=True)
    return jobs, rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=1.0, help="Seconds the LLM takes per request.")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--jobs-per-slot", type=int, default=4, help="Measured jobs per in-flight slot.")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--kinds", nargs="+", choices=("worker", "full"), default=["worker", "full"])
    parser.add_argument("--backends", nargs="+", choices=(SQLITE, POSTGRESQL), default=[SQLITE, POSTGRESQL])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4],
                        help="Worker processes sharing the largest --concurrency (on PostgreSQL).")
    parser.add_argument("--imports", type=int, default=8, help="Imports sent at the same moment (lock test).")
    parser.add_argument("--lock-rounds", type=int, default=2)
    parser.add_argument("--postgres", default=os.environ.get("ALVAR_BENCH_POSTGRES",
                                                             "postgresql://postgres@127.0.0.1:5432/postgres"),
                        help="A PostgreSQL server (its maintenance database) where a fresh database is made.")
    args = parser.parse_args()
    most = max(args.concurrency)
    full: dict[tuple[str, int], tuple[int, float]] = {}
    llm_only: dict[int, tuple[int, float]] = {}
    locks: dict[tuple[str, bool], list[ImportRound]] = {}
    scaling: dict[int, tuple[int, float]] = {}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="alvar-genbench-", dir="/tmp") as tmp, \
            ChatServer(latency=args.latency) as llm:
        root = Path(tmp)
        redis_url = services.ensure_redis(root / "redis", None)
        env = {"REDIS_URL": redis_url, "OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": "bench",
               "ALVAR_LLM_MODEL": "loopback-bench", "ALVAR_VARIATIONS": str(args.k),
               "ALVAR_CACHE_DIR": str(root / "cache"), "ALVAR_RECONCILE_INTERVAL": "0"}
        os.environ.update(env)
        connection = Redis.from_url(redis_url)
        bench = Bench(root, env, connection, iter(read_dataset(DATASETS / "test_labeled.tsv").examples), args.k)
        try:
            if "worker" in args.kinds:
                for concurrency in args.concurrency:
                    llm_only[concurrency] = timed(f"worker only, c={concurrency}", worker_rate, bench, concurrency,
                                                  args.jobs_per_slot)
            for backend in args.backends:
                # Project and task ids start at 1 on each Label Studio: the job ids and cached class counts of
                # the previous one must not be mistaken for this one's.
                connection.flushdb()
                with label_studio_on(bench, backend, args.postgres) as server:
                    if "full" in args.kinds:
                        for concurrency in args.concurrency:
                            full[backend, concurrency] = timed(
                                f"full on {BACKEND_NAMES[backend]}, c={concurrency}", full_rate, bench, server,
                                backend, concurrency, args.jobs_per_slot)
                    for locked in (True, False):
                        rounds = [concurrent_imports(server, connection, args.imports, args.k, locked,
                                                     bench.take(args.imports)) for _ in range(args.lock_rounds)]
                        locks[backend, locked] = rounds
                        print(f"  imports on {BACKEND_NAMES[backend]}, lock {'on' if locked else 'off'}: "
                              f"{sum(r.lost_predictions for r in rounds)} pre-labels lost", flush=True)
                    if backend == POSTGRESQL and "full" in args.kinds:
                        # One process with every job in flight was measured above (table 1).
                        scaling[1] = full[backend, most]
                        for processes in [p for p in args.processes if p > 1]:
                            scaling[processes] = timed(
                                f"full on PostgreSQL, {processes} processes x {most // processes}", full_rate,
                                bench, server, backend, most, args.jobs_per_slot, processes)
        finally:
            services.stop_process(root / "redis", "redis")
    console = Console(width=160)
    console.print(throughput_table(args, full, llm_only, bench.label_studio_cpu))
    console.print(lock_table(args, locks))
    console.print(lock_advice(args, locks, full))
    if scaling:
        console.print(scaling_table(args, scaling, bench.label_studio_cpu))
    console.print(f"one run: {time.perf_counter() - began:.0f} s")


def cpu_cell(cpu: dict[tuple[str, int, int], float], key: tuple[str, int, int]) -> str:
    return f"{cpu[key]:.2f}" if key in cpu else "-"


def throughput_table(args: argparse.Namespace, full: dict[tuple[str, int], tuple[int, float]],
                     llm_only: dict[int, tuple[int, float]], cpu: dict[tuple[str, int, int], float]) -> Table:
    table = Table(title=f"1. generation jobs/s, one worker process, LLM latency {args.latency:g} s, k = {args.k}; "
                        "Label Studio's CPU seconds per full job")
    for column in ("in flight", "jobs", "worker only", "full, SQLite", "full, PostgreSQL", "PostgreSQL / SQLite",
                   "target", "met (PostgreSQL)", "LS CPU s/job, SQLite", "LS CPU s/job, PostgreSQL"):
        table.add_column(column, justify="right")
    for concurrency in args.concurrency:
        target = 0.8 * concurrency / args.latency
        only = llm_only.get(concurrency)
        sqlite = full.get((SQLITE, concurrency))
        postgres = full.get((POSTGRESQL, concurrency))
        table.add_row(str(concurrency), str((sqlite or postgres or only or (0, 0))[0]),
                      f"{only[1]:.2f}" if only else "-", f"{sqlite[1]:.2f}" if sqlite else "-",
                      f"{postgres[1]:.2f}" if postgres else "-",
                      f"{postgres[1] / sqlite[1]:.2f}x" if sqlite and postgres else "-", f">= {target:.1f}",
                      ("yes" if postgres[1] >= target else "NO") if postgres else "-",
                      cpu_cell(cpu, (SQLITE, concurrency, 1)), cpu_cell(cpu, (POSTGRESQL, concurrency, 1)))
    return table


def lock_table(args: argparse.Namespace, locks: dict[tuple[str, bool], list[ImportRound]]) -> Table:
    table = Table(title=f"2. {args.imports} imports at once of k = {args.k} variations with 2 pre-labels each, "
                        f"{args.lock_rounds} rounds")
    for column in ("back end", "import lock", "tasks sent", "tasks made", "pre-labels lost", "imports short",
                   "imports/s", "longest import (s)"):
        table.add_column(column, justify="right")
    for (backend, locked), rounds in locks.items():
        table.add_row(BACKEND_NAMES[backend], "on" if locked else "off", str(sum(r.tasks for r in rounds)),
                      str(sum(r.tasks_found for r in rounds)), str(sum(r.lost_predictions for r in rounds)),
                      str(sum(r.reported_short for r in rounds)), f"{imports_per_second(rounds):.2f}",
                      f"{max(r.longest_import for r in rounds):.2f}")
    return table


def lock_advice(args: argparse.Namespace, locks: dict[tuple[str, bool], list[ImportRound]],
                full: dict[tuple[str, int], tuple[int, float]]) -> str:
    """The recommendation the numbers support, per back end measured."""
    lines = []
    most = max(args.concurrency)
    for backend in args.backends:
        with_lock, without = locks.get((backend, True)), locks.get((backend, False))
        if not with_lock or not without:
            continue
        lost = sum(r.lost_predictions for r in without)
        locked_rate = imports_per_second(with_lock)
        free_rate = imports_per_second(without)
        rate = full.get((backend, most))
        needed = "needed" if lost else "not needed for correctness"
        line = (f"{BACKEND_NAMES[backend]}: without the lock {lost} pre-labels were lost in "
                f"{sum(r.imports for r in without)} imports -> the lock is {needed}; it serializes a project's imports "
                f"at {locked_rate:.1f}/s (unlocked {free_rate:.1f}/s, {free_rate / locked_rate:.2f}x), which caps the "
                f"full job of one project at about {locked_rate:.1f} jobs/s (target at {most} in flight: "
                f"{0.8 * most / args.latency:.1f})")
        if rate:
            line += f"; measured with the lock: {rate[1]:.2f} jobs/s at {most} in flight"
        lines.append(line)
    return "\n".join(lines)


def scaling_table(args: argparse.Namespace, scaling: dict[int, tuple[int, float]],
                  cpu: dict[tuple[str, int, int], float]) -> Table:
    most = max(args.concurrency)
    table = Table(title=f"3. full job on PostgreSQL, {most} in flight over P worker processes")
    for column in ("processes", "in flight each", "jobs", "jobs/s", "vs 1 process", "target", "met",
                   "LS CPU s/job"):
        table.add_column(column, justify="right")
    baseline = scaling.get(min(scaling))
    target = 0.8 * most / args.latency
    for processes, (jobs, rate) in sorted(scaling.items()):
        table.add_row(str(processes), str(most // processes), str(jobs), f"{rate:.2f}",
                      f"{rate / baseline[1]:.2f}x" if baseline else "-", f">= {target:.1f}",
                      "yes" if rate >= target else "NO", cpu_cell(cpu, (POSTGRESQL, most, processes)))
    return table


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


if __name__ == "__main__":
    main()
