"""Wall time of the paper-sized simulation with the fast learner, against the 5-minute target.

    python bench/simulation_time.py

Runs `alvar simulate` on the two stratified halves of test_labeled.tsv (pool and eval) from
bootstrap_labeled.tsv: 4 strategies x 5 seeds x 5 rounds of 20, fast learner. Once with an empty embedding
cache (every text embedded), once with the cache it left (what a second run costs). Target: < 300 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATASETS = Path(__file__).resolve().parents[2] / "shared/datasets/active-learning-safety"
TARGET_SECONDS = 300.0


def main() -> None:
    command = [str(Path(sys.executable).with_name("alvar")), "simulate", "--pool", str(DATASETS / "test_labeled.tsv"),
               "--bootstrap", str(DATASETS / "bootstrap_labeled.tsv"), "--strategies", "random,topn,coreset,cluster",
               "--rounds", "5", "--per-round", "20", "--seeds", "5", "--learner", "fast"]
    with tempfile.TemporaryDirectory(prefix="alvar-simtime-") as tmp:
        env = {**os.environ, "ALVAR_CACHE_DIR": str(Path(tmp) / "cache")}
        print("| run | seconds | vs the 300 s target |\n|---|---|---|")
        for run in ("empty embedding cache", "warm embedding cache"):
            started = time.perf_counter()
            subprocess.run([*command, "--out", str(Path(tmp) / "out")], env=env, check=True, capture_output=True)
            seconds = time.perf_counter() - started
            print(f"| {run} | {seconds:.1f} | {seconds / TARGET_SECONDS:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
