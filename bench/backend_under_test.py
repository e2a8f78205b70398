"""The ML backend the fuzzer works on: a real `alvar backend` process (waitress) with basic auth and a webhook secret,
serving a quickly trained learner, and its resident memory."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from hostile_requests import AUTH, BOOTSTRAP, PASSWORD, SECRET, USER

from alvar.backend.learner import TransformerClassifier
from alvar.backend.model_store import ModelStore
from alvar.datafiles import read_dataset
from alvar.settings import load_settings


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def train_model(model_dir: Path, texts_per_class: int = 4) -> None:
    """A 1-epoch learner on a few bootstrap texts of each class: enough to score, quick to train."""
    data = read_dataset(BOOTSTRAP)
    picked: dict[str, list[str]] = {}
    for text, label in zip(data.texts, data.labels, strict=True):
        if len(picked.setdefault(label, [])) < texts_per_class:
            picked[label].append(text)
    texts = [text for group in picked.values() for text in group]
    labels = [label for label, group in picked.items() for _ in group]
    learner = TransformerClassifier(load_settings().base_model, epochs=1, num_threads=2).fit(texts, labels)
    store = ModelStore(model_dir)
    store.switch(store.save(learner, texts, labels))


@contextmanager
def backend_process(model_dir: Path, redis_url: str, work: Path) -> Iterator[tuple[subprocess.Popen, str, Path]]:
    """`alvar backend` (waitress, the default server) on a free loopback port, with its log file."""
    port = free_port()
    log_path = work / "backend.log"
    env = {**os.environ, "MODEL_DIR": str(model_dir), "REDIS_URL": redis_url, "BASIC_AUTH_USER": USER,
           "BASIC_AUTH_PASS": PASSWORD, "ALVAR_WEBHOOK_SECRET": SECRET, "ALVAR_DATA_DIR": str(work / "data"),
           "ALVAR_RETRAIN_EVERY": "1000000", "ALVAR_TORCH_THREADS": "2"}
    alvar = str(Path(sys.executable).with_name("alvar"))
    with log_path.open("wb") as log:
        process = subprocess.Popen([alvar, "backend", "--host", "127.0.0.1", "--port", str(port)], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the backend did not start; see {log_path}:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        yield process, url, log_path
    finally:
        process.terminate()
        process.wait(timeout=30)


def healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/health", auth=AUTH, timeout=2).status_code == 200
    except requests.RequestException:
        return False
