"""Replacing a project's predictions after a retrain, at the ~3,000-task scale, through a real Label Studio.

    python bench/prediction_replacement.py [--tasks 3000] [--rounds 3] [--llm-share 0.1]

Starts Label Studio (alvar/loop/services.py) in a temporary dir and imports --tasks tasks, each with a prediction of
a first model version (and an ``llm:`` pre-label on --llm-share of them, as the generator leaves on variations).
Then, per round, does what a training job does after fitting a new version: imports the new version's
predictions (chunks of 1,000), sets the project's version, and deletes the older versions' predictions
(:func:`alvar.backend.publishing.delete_older_predictions`); it times the import and the deletion and checks
that exactly the new version's and the ``llm:`` predictions are left.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from label_studio_sdk import LabelStudio

from alvar.backend.publishing import delete_older_predictions, prediction_versions
from alvar.label_config import load
from alvar.labelstudio.choices_control import parse_choices_control
from alvar.loop import label_studio_server, services
from alvar.loop.project import create_project
from alvar.settings import load_settings

LLM_VERSION = "llm:bench"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def version_name(round_number: int) -> str:
    """A name shaped like the store's versions (creation time first), one minute apart per round."""
    created = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=round_number)
    return f"{created:%Y%m%d-%H%M%S-%f}-{round_number:08x}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--llm-share", type=float, default=0.1)
    args = parser.parse_args()
    control = parse_choices_control(load("annotate"))
    result = control.choice_result(control.labels[0])
    with tempfile.TemporaryDirectory(prefix="alvar-replace-", dir="/tmp") as tmp:
        root = Path(tmp)
        server = label_studio_server.start_label_studio(root, free_port(), "bench@alvar.local", "bench-password",
                                             "bench-token-0123456789", load_settings().label_studio_venv)
        try:
            client = LabelStudio(base_url=server.url, api_key=server.token, timeout=600)
            project_id = create_project(client, "prediction replacement benchmark", load("annotate"))
            with_llm = int(args.tasks * args.llm_share)
            tasks = [{"data": {control.data_key: f"bench text {i}"},
                      "predictions": [{"result": result, "score": 0.5, "model_version": version_name(0)}]
                      + ([{"result": result, "score": 1.0, "model_version": LLM_VERSION}] if i < with_llm else [])}
                     for i in range(args.tasks)]
            started = time.perf_counter()
            task_ids: list[int] = []
            for start in range(0, len(tasks), 1000):
                task_ids += client.projects.import_tasks(id=project_id, request=tasks[start:start + 1000],
                                                         return_task_ids=True).task_ids or []
            print(f"imported {len(task_ids)} tasks with predictions in {time.perf_counter() - started:.1f} s")
            client.projects.update(id=project_id, model_version=version_name(0))
            print("| round | predictions imported | import s | predictions deleted | delete s |\n|---|---|---|---|---|")
            for round_number in range(1, args.rounds + 1):
                version = version_name(round_number)
                started = time.perf_counter()
                for start in range(0, len(task_ids), 1000):
                    client.projects.import_predictions(id=project_id, request=[
                        {"task": task_id, "result": result, "score": 0.4, "model_version": version}
                        for task_id in task_ids[start:start + 1000]])
                client.projects.update(id=project_id, model_version=version)
                imported = time.perf_counter() - started
                started = time.perf_counter()
                deleted = delete_older_predictions(client, project_id, version)
                deleting = time.perf_counter() - started
                left = prediction_versions(client, project_id)
                expected = {version: len(task_ids), **({LLM_VERSION: with_llm} if with_llm else {})}
                assert left == expected, (left, expected)
                print(f"| {round_number} | {len(task_ids)} | {imported:.1f} | {sum(deleted.values())} | "
                      f"{deleting:.1f} |")
        finally:
            services.stop_process(root, "label-studio")


if __name__ == "__main__":
    main()
