"""Generation throughput of one worker process against requests in flight.

    python bench/generation_throughput.py [--latency 1.0] [--concurrency 1 4 16] [--jobs-per-slot 8]

Starts Label Studio and an embedded Redis in a temporary dir, and the loopback chat-completions server
(tests/chat_server.py) answering every request after --latency seconds. For each concurrency c, one
`alvar worker --queues generation --concurrency c --burst` process serves two kinds of jobs:
- "full": the job the webhook queues, for freshly annotated tasks: read the task, ask the LLM, screen, import
  k pre-labelled tasks into Label Studio, look for stale ones;
- "worker": the same LLM request and screening with Label Studio left out (``llm_only_job`` below), which
  shows what the worker itself sustains.
jobs/s is measured with RQ's own timestamps, after the first c jobs (warm-up: connections, first requests),
from the first measured job's start to the last one's end. Target: >= 0.8 x c / latency jobs/s. Baseline in
the same run: c = 1.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from label_studio_sdk import LabelStudio
from redis import Redis
from rich.console import Console
from rich.table import Table
from rq import Queue
from rq.job import Job

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alvar.datafiles import Example, read_dataset  # noqa: E402
from alvar.generator.generation import generate  # noqa: E402
from alvar.generator.jobs import generate_variations, generation_key  # noqa: E402
from alvar.generator.templates import VariationPrompt  # noqa: E402
from alvar.generator.worker_resources import current_resources  # noqa: E402
from alvar.label_config import load  # noqa: E402
from alvar.labelstudio.label_config import parse_choices_control  # noqa: E402
from alvar.scripts import services  # noqa: E402
from alvar.scripts.project import create_project, import_pool  # noqa: E402
from alvar.settings import GENERATION_QUEUE, load_settings  # noqa: E402
from tests.chat_server import ChatServer  # noqa: E402

DATASETS = Path(__file__).resolve().parents[2] / "shared/datasets/active-learning-safety"


REPO = Path(__file__).resolve().parents[1]


def llm_only_job(text: str, label: str) -> int:
    """A generation job without Label Studio: prompt, LLM request, parsing and screening."""
    resources = current_resources()
    settings = resources.settings
    prompt = VariationPrompt(text=text, label=label, k=settings.variations, max_chars=settings.max_variation_chars)
    return len(generate(prompt, resources.chat).variations)


def annotated_jobs(client: LabelStudio, project_id: int, examples: list[Example], queue: Queue) -> list[str]:
    control = parse_choices_control(load("annotate"))
    job_ids = []
    for task_id, example in zip(import_pool(client, project_id, examples), examples):
        label = example.label or control.labels[0]
        annotation = client.annotations.create(id=task_id, result=control.choice_result(label), was_cancelled=False)
        job_id = generation_key(project_id, task_id, label)
        queue.enqueue(generate_variations, project_id, task_id, label, example.text, job_id=job_id,
                      job_timeout=300, result_ttl=3600, meta={"annotation": int(annotation.id)})
        job_ids.append(job_id)
    return job_ids


def run(root: Path, env: dict[str, str], concurrency: int, job_ids: list[str], connection: Redis,
        kind: str) -> float:
    log = root / f"worker-{kind}-{concurrency}.log"
    subprocess.run([str(Path(sys.executable).with_name("alvar")), "worker", "--queues", "generation",
                    "--concurrency", str(concurrency), "--burst", "--name", f"bench-{kind}-{concurrency}"],
                   env={**os.environ, **env, "PYTHONPATH": str(REPO)}, check=True, stdout=log.open("w"),
                   stderr=subprocess.STDOUT)
    jobs = [job for job in Job.fetch_many(job_ids, connection=connection) if job is not None]
    failed = [job for job in jobs if job.get_status() != "finished"]
    if failed or len(jobs) != len(job_ids):
        reasons = sorted({(job.latest_result().exc_string or "").strip().splitlines()[-1] if job.latest_result()
                          else str(job.get_status()) for job in failed})
        raise SystemExit(f"{len(job_ids) - len(jobs) + len(failed)} jobs did not finish ({reasons}); see {log}")
    measured = sorted(jobs, key=lambda job: job.started_at)[concurrency:]
    span = max(job.ended_at for job in measured) - min(job.started_at for job in measured)
    return len(measured) / span.total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=1.0, help="Seconds the LLM takes per request.")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--jobs-per-slot", type=int, default=8, help="Measured jobs per in-flight slot.")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--kinds", nargs="+", choices=("worker", "full"), default=["worker", "full"])
    args = parser.parse_args()
    table = Table(title=f"generation jobs/s, one worker process, LLM latency {args.latency:g} s, k = {args.k}")
    for column in ("job", "in flight", "jobs", "jobs/s", "vs 1 in flight", "target", "met"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory(prefix="alvar-genbench-", dir="/tmp") as tmp, \
            ChatServer(latency=args.latency) as llm:
        root = Path(tmp)
        redis_url = services.ensure_redis(root / "redis", None)
        server = services.start_label_studio(root / "ls", services_port(), "bench@alvar.local", "bench-password",
                                             "bench-token-0123456789", load_settings().label_studio_venv)
        env = {"REDIS_URL": redis_url, "LABEL_STUDIO_URL": server.url, "LABEL_STUDIO_API_KEY": server.token,
               "OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": "bench", "ALVAR_LLM_MODEL": "loopback-bench",
               "ALVAR_VARIATIONS": str(args.k), "ALVAR_CACHE_DIR": str(root / "cache")}
        os.environ.update(env)
        try:
            client = LabelStudio(base_url=server.url, api_key=server.token, timeout=300)
            connection = Redis.from_url(redis_url)
            queue = Queue(GENERATION_QUEUE, connection=connection)
            examples = iter(read_dataset(DATASETS / "test_labeled.tsv").examples)
            for kind in args.kinds:
                baseline = None
                for concurrency in args.concurrency:
                    batch = [next(examples) for _ in range(args.jobs_per_slot * concurrency + concurrency)]
                    if kind == "full":
                        project_id = create_project(client, f"throughput c={concurrency}", load("annotate"))
                        job_ids = annotated_jobs(client, project_id, batch, queue)
                    else:
                        job_ids = [queue.enqueue("bench.generation_throughput.llm_only_job", example.text,
                                                 example.label or "discard", result_ttl=3600).id
                                   for example in batch]
                    rate = run(root, env, concurrency, job_ids, connection, kind)
                    baseline = baseline or rate
                    target = 0.8 * concurrency / args.latency
                    table.add_row(kind, str(concurrency), str(len(batch)), f"{rate:.2f}", f"{rate / baseline:.2f}x",
                                  f">= {target:.1f}", "yes" if rate >= target else "NO")
        finally:
            services.stop_process(root / "ls", "label-studio")
            services.stop_process(root / "redis", "redis")
    Console().print(table)


def services_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


if __name__ == "__main__":
    main()
