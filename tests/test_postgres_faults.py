"""PostgreSQL restarted under running generation jobs: Label Studio on a private PostgreSQL cluster
(tests/postgres_server.py), a real `alvar worker` on the generation queue, the loopback LLM, real Redis.

What we promise: Label Studio keeps running through the restart (Django opens a connection per request, so the
requests made while PostgreSQL is away, /health included, fail with 500 and the first ones after it is back
succeed, with no restart of Label Studio); the jobs that
met the outage fail, RQ runs them again after the policy's first retry interval, and every job ends finished with each
source holding exactly its k variations, each with its pre-label: none lost, none doubled.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
import requests
from label_studio_sdk import LabelStudio
from redis import Redis
from rq.job import Job, JobStatus

from alvar.datafiles import read_dataset
from alvar.generator.reaction import queue_generation
from alvar.labelstudio.client import iter_tasks
from alvar.labelstudio.webhook import HumanLabel
from alvar.loop import label_studio_server, services
from alvar.loop.label_studio_database import create_database
from alvar.loop.project import create_project, import_pool
from alvar.processes import process_alive
from alvar.queues import JobPolicy, generation_queue
from alvar.settings import load_settings
from tests.chat_server import ChatServer
from tests.conftest import LS_PASSWORD, LS_TOKEN, LS_USER, alvar_command, free_port, wait_for
from tests.generator_stack import CONFIG, CONTROL
from tests.postgres_server import PostgresServer

pytestmark = pytest.mark.label_studio

K = 3
SOURCES = 24
LLM_LATENCY = 1.0
OUTAGE_SECONDS = 6.0
# The jobs this test queues: production's timeout, and retries a few seconds apart instead of 30 s.
POLICY = JobPolicy(timeout=120, retry_intervals=(2, 4, 8))


def finished(connection: Redis, job_ids: list[str]) -> int:
    return sum(job is not None and job.get_status() == JobStatus.FINISHED
               for job in Job.fetch_many(job_ids, connection=connection))


def test_postgresql_restarted_while_generation_jobs_run(tmp_path: Path, safety_dir: Path,
                                                        external_redis_url: str) -> None:
    examples = read_dataset(safety_dir / "test_labeled.tsv").examples[:SOURCES]
    connection = Redis.from_url(external_redis_url)
    with PostgresServer(free_port()) as postgres, ChatServer(latency=LLM_LATENCY) as llm:
        database = create_database(postgres.url(), "label_studio")
        ls_dir = tmp_path / "ls"
        server = label_studio_server.start_label_studio(ls_dir, free_port(), LS_USER, LS_PASSWORD, LS_TOKEN,
                                             venv=load_settings().label_studio_venv,
                                             lock=load_settings().label_studio_lock, database=database)
        env = {"REDIS_URL": external_redis_url, "LABEL_STUDIO_URL": server.url, "LABEL_STUDIO_API_KEY": server.token,
               "OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": "test-key", "ALVAR_LLM_MODEL": "loopback-pg",
               "ALVAR_VARIATIONS": str(K), "ALVAR_GENERATION_CONCURRENCY": "4", "ALVAR_RECONCILE_INTERVAL": "0",
               "ALVAR_CACHE_DIR": str(tmp_path / "cache")}
        try:
            ls = LabelStudio(base_url=server.url, api_key=server.token, timeout=60)
            project_id = create_project(ls, "postgres restart", CONFIG)
            sources = import_pool(ls, project_id, examples)
            queue = generation_queue(connection)
            job_ids = []
            for task_id, example in zip(sources, examples):
                label = example.label or CONTROL.labels[0]
                annotation = ls.annotations.create(id=task_id, result=CONTROL.choice_result(label),
                                                   was_cancelled=False)
                found = HumanLabel(task_id, int(annotation.id), label, example.text)
                job_ids.append(queue_generation(connection, queue, project_id, found, POLICY)["job_id"])

            services.start_process(tmp_path, "worker", [*alvar_command(), "worker", "--queues", "generation",
                                                        "--name", f"pg-restart-{free_port()}"], env)
            wait_for(lambda: finished(connection, job_ids) >= 2, 120, "the first finished jobs")
            postgres.stop("fast")
            down = time.monotonic()
            # Every request, /health included (its middleware reads the database), fails while PostgreSQL is away;
            # the server itself keeps running.
            health = requests.get(f"{server.url}/health", timeout=10).status_code
            assert health == 500 and process_alive(server.pid)
            while time.monotonic() - down < OUTAGE_SECONDS:
                time.sleep(0.5)
            postgres.start()
            # Label Studio reconnects by itself: Django's connections live for one request (CONN_MAX_AGE 0).
            assert services.healthy(server.url) and ls.projects.get(id=project_id).id == project_id

            wait_for(lambda: finished(connection, job_ids) == SOURCES,
                     2 * POLICY.retry_intervals[0] + 120, "every job finished after PostgreSQL came back")
            jobs = Job.fetch_many(job_ids, connection=connection)
            retried = [job for job in jobs if job is not None and job.meta.get("failures", 0) > 0]
            assert retried, "no job met the outage: the restart did not happen while jobs ran"
            # A run whose import committed while its answer was lost finds the set when it runs again.
            outcomes = [job.return_value() for job in jobs if job is not None]
            assert all(outcome["status"] in ("imported", "already imported") for outcome in outcomes), outcomes

            tasks = list(iter_tasks(ls, project_id))
            made = [task for task in tasks if task["data"].get("origin") == "llm"]
            assert len(tasks) == SOURCES + SOURCES * K
            assert Counter(task["data"]["source_task"] for task in made) == {task_id: K for task_id in sources}
            assert all(len(task["predictions"]) == 1 for task in made), "a variation lost or doubled its pre-label"
        finally:
            services.stop_process(tmp_path, "worker")
            services.stop_process(ls_dir, "label-studio")
