"""Variation imports sent into one Label Studio project at the same moment, with the generator's import lock or
without: what they leave (tasks, pre-labels lost, imports reported short) and how long they take."""

from __future__ import annotations

import threading
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from label_studio_sdk import LabelStudio
from redis import Redis

from alvar.datafiles import Example
from alvar.generator.generation import Generation
from alvar.generator.jobs import generation_key
from alvar.generator.source_state import import_lock
from alvar.generator.templates import VariationPrompt
from alvar.generator.variation_tasks import build_tasks
from alvar.label_config import load
from alvar.labelstudio.client import as_dict, iter_tasks
from alvar.labelstudio.label_config import parse_choices_control
from alvar.loop.label_studio_server import LabelStudioServer
from alvar.loop.project import create_project, import_pool

CONTROL = parse_choices_control(load("annotate"))
# The model version a trained project has: each variation then carries two pre-labels (see build_tasks).
PROJECT_VERSION = "bench-version"


@dataclass(frozen=True)
class ImportRound:
    """``imports`` imports sent at once into one project: what they left and how long they took."""

    imports: int
    tasks: int
    tasks_found: int
    lost_predictions: int
    reported_short: int
    seconds: float
    longest_import: float


def variation_request(project_id: int, source: dict, text: str, k: int, number: int) -> list[dict]:
    """The import request of one job's k variations, as :func:`build_tasks` makes it."""
    label = CONTROL.labels[number % len(CONTROL.labels)]
    prompt = VariationPrompt(text=text, label=label, k=k)
    generation = Generation([f"{text} (bench variation {number}.{index})" for index in range(k)], k,
                            prompt.template_id, "bench-llm")
    key = generation_key(project_id, int(source["id"]), label)
    return build_tasks(generation, prompt, source, None, key, CONTROL, PROJECT_VERSION)


def concurrent_imports(label_studio: LabelStudioServer, connection: Redis, imports: int, k: int,
                       locked: bool, examples: list[Example]) -> ImportRound:
    """``imports`` threads, one SDK client each, import their job's variations at the same moment."""
    client = LabelStudio(base_url=label_studio.url, api_key=label_studio.token, timeout=300)
    project_id = create_project(client, f"import lock {'on' if locked else 'off'}", load("annotate"))
    sources = import_pool(client, project_id, examples[:imports])
    requests = [variation_request(project_id, as_dict(client.tasks.get(id=str(task_id))), example.text, k, number)
                for number, (task_id, example) in enumerate(zip(sources, examples))]
    start = threading.Barrier(imports + 1)
    durations: list[float] = []
    short: list[int] = []

    def one_import(request: list[dict]) -> None:
        own = LabelStudio(base_url=label_studio.url, api_key=label_studio.token, timeout=300)
        lock: AbstractContextManager[object] = import_lock(connection, project_id) if locked else nullcontext()
        start.wait()
        began = time.perf_counter()
        with lock:
            response = own.projects.import_tasks(id=project_id, request=request, return_task_ids=True,
                                                 request_options={"max_retries": 0})
        durations.append(time.perf_counter() - began)
        expected = sum(len(item["predictions"]) for item in request)
        short.append(expected - (response.prediction_count or 0))

    threads = [threading.Thread(target=one_import, args=(request,)) for request in requests]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    made = [task for task in iter_tasks(client, project_id) if task["data"].get("origin") == "llm"]
    per_task = len(requests[0][0]["predictions"])
    lost = sum(max(0, per_task - len(task.get("predictions") or [])) for task in made)
    return ImportRound(imports, sum(len(request) for request in requests), len(made), lost,
                       sum(1 for missing in short if missing > 0), seconds, max(durations))


def imports_per_second(rounds: list[ImportRound]) -> float:
    return sum(r.imports for r in rounds) / sum(r.seconds for r in rounds)
