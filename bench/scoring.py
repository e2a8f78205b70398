"""Scoring speed: our learner's batched scoring against transformers' pipeline, and one /predict of 1,000 tasks.

    python bench/scoring.py [--texts FILE] [--model-dir DIR]

Both sides score the same texts with the same saved model and the same torch thread count; the baseline is
`transformers.pipeline("text-classification")` with its defaults (one text per forward pass). Targets:
ours >= 4x the pipeline's texts/s with the same argmax on >= 99.9 % of texts; /predict of 1,000 tasks <= 5 s.
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
from alvar.label_config import load
from alvar.scripts import services
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


def predict_request_seconds(model_dir: Path, root: Path, tasks: list[dict]) -> float:
    redis_url = services.ensure_redis(root / "stack", None)
    port = 9000 + int(time.time()) % 500
    env = {"MODEL_DIR": str(model_dir), "REDIS_URL": redis_url}
    services.start_process(root / "stack", "backend",
                           [str(Path(sys.executable).with_name("alvar")), "backend", "--workers", "1",
                            "--port", str(port)], env)
    url = f"http://127.0.0.1:{port}"
    try:
        services.wait_until(lambda: services.healthy(url), "backend", 120,
                            log=services.log_path(root / "stack", "backend"))
        body = {"tasks": tasks, "label_config": load("annotate"), "project": "1.1"}
        requests.post(f"{url}/predict", json={**body, "tasks": tasks[:16]}, timeout=100).raise_for_status()
        started = time.perf_counter()
        response = requests.post(f"{url}/predict", data=json.dumps(body), timeout=100,
                                 headers={"Content-Type": "application/json"})
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        assert len(response.json()["results"]) == len(tasks)
        return elapsed
    finally:
        services.stop_process(root / "stack", "backend")
        services.stop_process(root / "stack", "redis")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=Path, default=DATASETS / "test_labeled.tsv")
    parser.add_argument("--model-dir", type=Path, help="a MODEL_DIR with a current version (default: train one)")
    args = parser.parse_args()
    settings = load_settings()
    torch.set_num_threads(settings.torch_threads)
    texts = read_dataset(args.texts).texts
    with tempfile.TemporaryDirectory(prefix="alvar-bench-", dir="/tmp") as tmp:
        root = Path(tmp)
        model_dir = args.model_dir or trained_model_dir(settings, root)
        version, learner = ModelStore(model_dir).load(num_threads=settings.torch_threads,
                                                      inference_batch_size=settings.inference_batch_size)
        learner.predict_proba(texts[:64])
        ours, ours_seconds = timed(learner.predict_proba, texts)
        baseline, baseline_seconds = timed(pipeline_probabilities, ModelStore(model_dir).path(version), texts,
                                           learner.classes_, learner.max_length)
        agreement = float(np.mean(ours.argmax(axis=1) == baseline.argmax(axis=1)))
        tasks = [{"id": i, "data": {"text": text}} for i, text in enumerate((texts * 2)[:1000])]
        predict_seconds = predict_request_seconds(model_dir, root, tasks)
    print(f"texts: {len(texts)} from {args.texts.name}; torch threads: {settings.torch_threads}")
    print("| scorer | seconds | texts/s |\n|---|---|---|")
    print(f"| transformers pipeline (defaults) | {baseline_seconds:.2f} | {len(texts) / baseline_seconds:.0f} |")
    print(f"| alvar learner.predict_proba | {ours_seconds:.2f} | {len(texts) / ours_seconds:.0f} |")
    print(f"speed-up: {baseline_seconds / ours_seconds:.1f}x (target >= 4x); "
          f"same argmax: {100 * agreement:.2f} % (target >= 99.9 %); max |dp| = {np.abs(ours - baseline).max():.2e}")
    print(f"/predict of 1,000 tasks over HTTP (gunicorn): {predict_seconds:.2f} s (target <= 5 s)")


if __name__ == "__main__":
    main()
