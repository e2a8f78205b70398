"""One full selection round at the 11K-task scale, through a real Label Studio.

    python bench/round.py --model-dir DIR [--tasks 11000] [--budget 20]

Starts Label Studio (alvar/loop/services.py) in a temporary dir, imports the safety texts (repeated with a
numbered suffix up to --tasks distinct texts), then times `select_project` twice: the first round (every text
embedded and scored) and a round after a new model version (embeddings from the cache, entropies new),
each including reading the tasks and writing the batch and its tab. Target: <= 60 s per round. First it times
select's read of the pool against reading every task whole. Also prints the
peak RSS (VmHWM) of this process, which embeds and scores the pool when ALVAR_SCORING resolves to local, after
each round. Embedding and scoring run in ALVAR_INFERENCE_PRECISION (float32 | bfloat16 | int8).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from label_studio_sdk import LabelStudio

from alvar.backend.learner import TransformerClassifier
from alvar.backend.model_store import ModelStore
from alvar.datafiles import Example, read_dataset
from alvar.label_config import load
from alvar.labelstudio.client import iter_tasks, pool_tasks
from alvar.loop import label_studio_server, services
from alvar.loop.project import create_project, import_pool
from alvar.loop.select import select_project
from alvar.settings import load_settings

DATASETS = Path(__file__).resolve().parents[2] / "shared/datasets/active-learning-safety"


def pool_texts(size: int) -> list[Example]:
    texts = list(dict.fromkeys(text for path in sorted(DATASETS.glob("*.tsv")) for text in read_dataset(path).texts))
    return [Example(str(i), texts[i % len(texts)] + ("" if i < len(texts) else f" ({i // len(texts) + 1})"), None)
            for i in range(size)]


def peak_rss_mib() -> float:
    """This process's peak resident set so far (VmHWM), in MiB."""
    status = Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024


def print_task_reads(client: LabelStudio, project_id: int) -> None:
    """The pool read select makes (:func:`pool_tasks`) against one read of every task whole, in this run."""
    started = time.perf_counter()
    whole = sum(1 for _ in iter_tasks(client, project_id, page_size=1000))
    whole_seconds = time.perf_counter() - started
    started = time.perf_counter()
    read = len(pool_tasks(client, project_id))
    seconds = time.perf_counter() - started
    print(f"reading {whole} tasks whole: {whole_seconds:.1f} s; select's pool read ({read} tasks): {seconds:.1f} s "
          f"({whole_seconds / seconds:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--tasks", type=int, default=11_000)
    parser.add_argument("--budget", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="alvar-round-", dir="/tmp") as tmp:
        root = Path(tmp)
        model_dir = Path(shutil.copytree(args.model_dir, root / "models"))
        settings = load_settings(model_dir=model_dir, cache_dir=root / "cache")
        server = label_studio_server.start_label_studio(root, 18123, "bench@alvar.local", "bench-password",
                                             "bench-token-0123456789", settings.label_studio_venv)
        try:
            client = LabelStudio(base_url=server.url, api_key=server.token, timeout=300)
            project_id = create_project(client, "round benchmark", load("annotate"))
            started = time.perf_counter()
            import_pool(client, project_id, pool_texts(args.tasks))
            print(f"imported {args.tasks} tasks in {time.perf_counter() - started:.1f} s")
            print_task_reads(client, project_id)
            started = time.perf_counter()
            first = select_project(settings, client, project_id, "cluster", args.budget, seed=0)
            first_seconds, first_peak = time.perf_counter() - started, peak_rss_mib()
            for task_id in first.task_ids:
                client.annotations.create(id=task_id, result=[{"from_name": "label", "to_name": "text",
                                                               "type": "choices", "value": {"choices": ["discard"]}}])
            bootstrap = read_dataset(DATASETS / "bootstrap_labeled.tsv")
            retrained = TransformerClassifier(settings.base_model, epochs=1).fit(bootstrap.texts, bootstrap.labels)
            store = ModelStore(model_dir)
            store.switch(store.save(retrained, bootstrap.texts, bootstrap.labels))
            started = time.perf_counter()
            second = select_project(settings, client, project_id, "cluster", args.budget, seed=0)
            second_seconds, second_peak = time.perf_counter() - started, peak_rss_mib()
        finally:
            services.stop_process(root, "label-studio")
    print(f"precision: {settings.inference_precision}; scoring: {settings.scoring}; "
          f"torch threads: {settings.torch_threads}")
    print("| round | what is computed | seconds (target <= 60) | peak RSS of the scoring process |\n|---|---|---|---|")
    print(f"| 1 (batch {first.batch}) | embed all {args.tasks} + score all + cluster + write | {first_seconds:.1f} | "
          f"{first_peak:.0f} MiB |")
    print(f"| 2 (batch {second.batch}) | embeddings cached; score all with the new version + cluster + write | "
          f"{second_seconds:.1f} | {second_peak:.0f} MiB |")


if __name__ == "__main__":
    main()
