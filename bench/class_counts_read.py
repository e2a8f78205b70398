"""What one read of a project's class counts costs (the balance policy's input), on a 3,000-task project.

    python bench/class_counts_read.py [--reads 3]

Starts a Label Studio 1.23.2 of its own (a temporary data dir) and fills one project the way a project looks
after a few rounds: 2,250 unlabelled pool tasks, the 150 bootstrap labels, 100 labelled pool tasks and 500
variations (100 reviewed valid, 400 waiting for review): 3,000 tasks. Times
:func:`alvar.generator.class_counts.read_class_counts` (what a generation job pays when the Redis cache has
expired; a busy worker pays it at most once per project every COUNTS_TTL seconds).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from label_studio_sdk import LabelStudio  # noqa: E402

from alvar.datafiles import read_dataset  # noqa: E402
from alvar.generator.class_counts import COUNTS_TTL, read_class_counts  # noqa: E402
from alvar.label_config import load  # noqa: E402
from alvar.labelstudio.choices_control import parse_choices_control  # noqa: E402
from alvar.labelstudio.task_data import VariationFields, pool_data  # noqa: E402
from alvar.loop import label_studio_server, services  # noqa: E402
from alvar.loop.init_plan import bootstrap_tasks  # noqa: E402
from alvar.loop.project import create_project  # noqa: E402
from alvar.settings import load_settings  # noqa: E402

DATASETS = Path(__file__).resolve().parents[2] / "shared/datasets/active-learning-safety"
TOKEN = "alvar-bench-token-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _fill(client: LabelStudio, project_id: int) -> int:
    control = parse_choices_control(load("annotate"))
    pool = read_dataset(DATASETS / "test_labeled.tsv").examples
    labelled, unlabelled = pool[:100], pool[100:2350]
    validity = {"from_name": "validity", "to_name": "text", "type": "choices", "value": {"choices": ["valid"]}}
    tasks: list[dict[str, Any]] = [{"data": pool_data(control.data_key, example)} for example in unlabelled]
    tasks += bootstrap_tasks(read_dataset(DATASETS / "bootstrap_labeled.tsv").examples, control)
    tasks += [{"data": pool_data(control.data_key, example),
               "annotations": [{"result": control.choice_result(str(example.label))}]} for example in labelled]
    for number in range(500):
        source = labelled[number % 100]
        fields = VariationFields(prelabel=source.label, source_label=source.label, source_text=source.text)
        task: dict[str, Any] = {"data": {control.data_key: f"{source.text} (variation {number})", **fields.data()}}
        if number < 100:
            task["annotations"] = [{"result": [*control.choice_result(str(source.label)), validity]}]
        tasks.append(task)
    for start in range(0, len(tasks), 1000):
        client.projects.import_tasks(id=project_id, request=tasks[start:start + 1000])  # type: ignore[arg-type]
    return len(tasks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="alvar-counts-", dir="/tmp") as tmp:
        data_dir = Path(tmp) / "ls"
        server = label_studio_server.start_label_studio(data_dir, _free_port(), "admin@alvar.bench", "alvar-bench-pass",
                                             TOKEN, venv=load_settings().label_studio_venv)
        try:
            client = LabelStudio(base_url=server.url, api_key=server.token)
            control = parse_choices_control(load("annotate"))
            project_id = create_project(client, "alvar class counts", load("annotate"))
            size = _fill(client, project_id)
            seconds = []
            for _ in range(args.reads):
                started = time.perf_counter()
                counts = read_class_counts(client, project_id, control)
                seconds.append(time.perf_counter() - started)
            print(f"{size} tasks; counts {counts} (sum {sum(counts.values())})")
            print(f"one read: median {statistics.median(seconds):.2f} s over {args.reads} "
                  f"(min {min(seconds):.2f}, max {max(seconds):.2f}); cached for {COUNTS_TTL} s per project")
        finally:
            services.stop_process(data_dir, "label-studio")


if __name__ == "__main__":
    main()
