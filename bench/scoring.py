"""Scoring speed: our learner against transformers' pipeline per precision and batch size, the embedder per
precision, one /predict of 1,000 tasks, and the backend's peak RSS while /predict scores an 11K pool.

    python bench/scoring.py [--texts FILE] [--model-dir DIR] [--batch-sizes 32,128] [--pool 11000]

Every row scores the same texts with the same saved model and the same torch thread count (ALVAR_TORCH_THREADS);
the baseline is `transformers.pipeline("text-classification")` with its defaults (one text per forward pass).
Each learner row is one precision of alvar/precision.py (float32; bfloat16 = bf16 linear weights under CPU
autocast; int8 = dynamic quantization of the linear layers) at one inference batch size (texts are length-sorted,
so a smaller batch pads less). Targets: >= 6x the pipeline's texts/s with the same argmax on >= 99.5 % of texts;
/predict of 1,000 tasks <= 5 s. The embedder rows compare each precision's vectors with float32's (cosine).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests
import torch
from transformers import pipeline

from alvar.backend.learner import TransformerClassifier
from alvar.backend.model_store import ModelStore
from alvar.datafiles import read_dataset
from alvar.embedder import Embedder
from alvar.label_config import load
from alvar.loop import services
from alvar.precision import PRECISIONS
from alvar.settings import load_settings

DATASETS = Path(__file__).resolve().parents[2] / "shared/datasets/active-learning-safety"


def trained_model_dir(settings, root: Path) -> Path:
    """A saved version trained for one epoch on the bootstrap set (speed does not depend on how well)."""
    data = read_dataset(DATASETS / "bootstrap_labeled.tsv")
    learner = TransformerClassifier(settings.base_model, epochs=1, num_threads=settings.torch_threads)
    store = ModelStore(root / "models")
    store.switch(store.save(learner.fit(data.texts, data.labels), data.texts, data.labels))
    return root / "models"


def timed(function, *args):
    started = time.perf_counter()
    value = function(*args)
    return value, time.perf_counter() - started


def pipeline_probabilities(model_path: Path, texts: list[str], classes: list[str], max_length: int) -> np.ndarray:
    classify = pipeline("text-classification", model=str(model_path), tokenizer=str(model_path), top_k=None,
                        device="cpu")
    outputs = classify(texts, truncation=True, max_length=max_length)
    column = {label: index for index, label in enumerate(classes)}
    probabilities = np.zeros((len(texts), len(classes)))
    for row, scores in enumerate(outputs):
        for score in scores:
            probabilities[row, column[score["label"]]] = score["score"]
    return probabilities


def peak_rss_mib(pid: int) -> float:
    """The largest peak resident set (VmHWM) of ``pid`` and its descendants, in MiB (gunicorn scores in a child)."""
    peak, pending = 0, [pid]
    while pending:
        current = pending.pop()
        proc = Path(f"/proc/{current}")
        try:
            status = (proc / "status").read_text()
            for task in (proc / "task").iterdir():
                pending.extend(int(child) for child in (task / "children").read_text().split())
        except FileNotFoundError:
            continue
        peak = max(peak, next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")))
    return peak / 1024


def backend_requests(model_dir: Path, root: Path, tasks: list[dict], pool: list[dict],
                     per_request: int) -> tuple[float, float, float]:
    """Seconds of one /predict of ``tasks``; seconds to score ``pool`` in requests of ``per_request`` tasks and
    the backend's peak RSS (MiB) by then."""
    redis_url = services.ensure_redis(root / "stack", None)
    port = 9000 + int(time.time()) % 500
    env = {"MODEL_DIR": str(model_dir), "REDIS_URL": redis_url}
    pid = services.start_process(root / "stack", "backend",
                                 [str(Path(sys.executable).with_name("alvar")), "backend", "--workers", "1",
                                  "--port", str(port)], env)
    url = f"http://127.0.0.1:{port}"
    try:
        services.wait_until(lambda: services.healthy(url), "backend", 120,
                            log=services.log_path(root / "stack", "backend"))
        body = {"label_config": load("annotate"), "project": "1.1"}

        def predict(batch: list[dict]) -> None:
            response = requests.post(f"{url}/predict", data=json.dumps({**body, "tasks": batch}), timeout=600,
                                     headers={"Content-Type": "application/json"})
            response.raise_for_status()
            assert len(response.json()["results"]) == len(batch)

        predict(tasks[:16])
        _, predict_seconds = timed(predict, tasks)
        started = time.perf_counter()
        for start in range(0, len(pool), per_request):
            predict(pool[start : start + per_request])
        return predict_seconds, time.perf_counter() - started, peak_rss_mib(pid)
    finally:
        services.stop_process(root / "stack", "backend")
        services.stop_process(root / "stack", "redis")


def learner_rows(learner: TransformerClassifier, texts: list[str], batch_sizes: list[int],
                 baseline: np.ndarray, baseline_seconds: float) -> list[str]:
    """One markdown row per (precision, batch size): texts/s, x vs the pipeline, same argmax, max |dp|."""
    rows = []
    for precision in PRECISIONS:
        learner.precision = precision
        for batch_size in batch_sizes:
            learner.inference_batch_size = batch_size
            learner.predict_proba(texts[:64])
            probabilities, seconds = timed(learner.predict_proba, texts)
            agreement = float(np.mean(probabilities.argmax(axis=1) == baseline.argmax(axis=1)))
            rows.append(f"| alvar {precision}, batch {batch_size} | {seconds:.2f} | {len(texts) / seconds:.0f} | "
                        f"{baseline_seconds / seconds:.1f}x | {100 * agreement:.2f} % | "
                        f"{np.abs(probabilities - baseline).max():.1e} |")
    return rows


def embedder_rows(model: str, texts: list[str], threads: int) -> list[str]:
    """One markdown row per precision of the embedder: texts/s and its vectors' cosine to float32's."""
    rows, reference = [], None
    for precision in PRECISIONS:
        embedder = Embedder(model, num_threads=threads, precision=precision)
        embedder.encode(texts[:64])
        vectors, seconds = timed(embedder.encode, texts)
        reference = vectors if reference is None else reference
        cosine = (vectors * reference).sum(axis=1)
        rows.append(f"| embedder {precision} | {seconds:.2f} | {len(texts) / seconds:.0f} | "
                    f"{cosine.min():.4f} | {cosine.mean():.5f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=Path, default=DATASETS / "test_labeled.tsv")
    parser.add_argument("--model-dir", type=Path, help="a MODEL_DIR with a current version (default: train one)")
    parser.add_argument("--batch-sizes", default="32,128", help="inference batch sizes to try, comma-separated")
    parser.add_argument("--pool", type=int, default=11_000, help="tasks /predict scores for the backend's peak RSS")
    args = parser.parse_args()
    settings = load_settings()
    torch.set_num_threads(settings.torch_threads)
    texts = read_dataset(args.texts).texts
    batch_sizes = [int(size) for size in args.batch_sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="alvar-bench-", dir="/tmp") as tmp:
        root = Path(tmp)
        model_dir = args.model_dir or trained_model_dir(settings, root)
        version, learner = ModelStore(model_dir).load_classifier(num_threads=settings.torch_threads)
        baseline, baseline_seconds = timed(pipeline_probabilities, ModelStore(model_dir).path(version), texts,
                                           learner.classes_, learner.max_length)
        rows = learner_rows(learner, texts, batch_sizes, baseline, baseline_seconds)
        embedded = embedder_rows(settings.embedding_model, texts, settings.torch_threads)
        tasks = [{"id": i, "data": {"text": text}} for i, text in enumerate((texts * 2)[:1000])]
        pool = [{"id": i, "data": {"text": f"{texts[i % len(texts)]} ({i})"}} for i in range(args.pool)]
        predict_seconds, pool_seconds, peak = backend_requests(model_dir, root, tasks, pool,
                                                               settings.max_tasks_per_request)
    print(f"texts: {len(texts)} from {args.texts.name}; torch threads: {settings.torch_threads}")
    print("| scorer | seconds | texts/s | x pipeline (target >= 6x) | same argmax (target >= 99.5 %) | max |dp| |")
    print("|---|---|---|---|---|---|")
    print(f"| transformers pipeline (defaults) | {baseline_seconds:.2f} | {len(texts) / baseline_seconds:.0f} | "
          "1.0x | - | - |")
    print("\n".join(rows))
    print("\n| embedder | seconds | texts/s | min cosine to float32 | mean cosine |\n|---|---|---|---|---|")
    print("\n".join(embedded))
    print(f"\n/predict of 1,000 tasks over HTTP (gunicorn, ALVAR_INFERENCE_PRECISION={settings.inference_precision}):"
          f" {predict_seconds:.2f} s (target <= 5 s)")
    print(f"/predict of a {args.pool}-task pool in requests of <= {settings.max_tasks_per_request} tasks: "
          f"{pool_seconds:.1f} s; backend peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
