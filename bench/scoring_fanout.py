"""Pool scoring fanned out over `alvar worker --queues scoring` processes, against scoring in one process.

    python bench/scoring_fanout.py --model-dir DIR [--tasks 11000] [--chunk 1024] [--processes 1,2]

The pool is bench/round.py's (the safety texts, repeated with a numbered suffix up to --tasks distinct texts).
Each run starts from an empty cache and computes what a select needs: the class probabilities and the embeddings
of every text. First in this process (ALVAR_SCORING=local), then fanned out (ALVAR_SCORING=queue) over a worker
started with --processes P for each P (on an embedded Redis of its own; the machine's cores are split between the
processes). Printed per run: seconds, ratio to local, max |dp| and argmax agreement of the probabilities and max
|de| of the embeddings against local, the median seconds per chunk, the peak RSS (VmHWM) of each worker process,
and the arithmetic for N machines: time ~= chunks x per-chunk cost / N + overhead. Each worker loads its models
on its first chunk; that load is inside the fanned-out seconds (as for a select right after `alvar worker`
started) but not in the median per-chunk cost.

On a 2-core machine two processes share the cores one process would use: they show that the fan-out is correct
and what it costs, not that it is faster. Speed comes from more machines (or cores), as the arithmetic says.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from redis import Redis

from alvar.loop import services
from alvar.loop.jobs import worker_rows
from alvar.loop.scoring_fanout import FanOut, live_scoring_workers
from alvar.loop.selection import fill_caches, pool_embeddings, pool_probabilities
from alvar.settings import SCORING_QUEUE, Settings, load_settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.round import pool_texts  # noqa: E402


def scores(settings: Settings, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return pool_probabilities(settings, texts)[2], pool_embeddings(settings, texts)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def scoring_pids(connection: Redis) -> list[int]:
    return sorted(row.pid for row in worker_rows(connection) if row.live and SCORING_QUEUE in row.queues and row.pid)


def fanned_out(root: Path, settings: Settings, texts: list[str], processes: int
               ) -> tuple[float, FanOut, list[float], tuple[np.ndarray, np.ndarray]]:
    """Seconds, the fan-out's report, each worker process's peak RSS (MiB), and the scores read back."""
    redis_url = services.ensure_redis(root / "redis", None)
    connection = Redis.from_url(redis_url)
    threads = max(1, (os.cpu_count() or 1) // processes)
    services.start_process(root, "worker", [str(Path(sys.executable).with_name("alvar")), "worker", "--queues",
                                            "scoring", "--processes", str(processes)],
                           {"REDIS_URL": redis_url, "MODEL_DIR": str(settings.model_dir),
                            "ALVAR_TORCH_THREADS": str(threads), "ALVAR_DATA_DIR": str(root),
                            "ALVAR_INFERENCE_BATCH_SIZE": str(settings.inference_batch_size)})
    try:
        deadline = time.monotonic() + 300
        while live_scoring_workers(connection) < processes:
            if time.monotonic() > deadline:
                raise SystemExit(f"the {processes} scoring worker processes did not come up (see {root}/logs)")
            time.sleep(0.5)
        queued = settings.model_copy(update={"redis_url": redis_url, "scoring": "queue"})
        started = time.perf_counter()
        report = fill_caches(queued, texts, texts)
        seconds = time.perf_counter() - started
        assert report is not None
        rss = [peak_rss_mib(pid) for pid in scoring_pids(connection)]
    finally:
        services.stop_process(root, "worker")
        services.stop_process(root / "redis", "redis")
    return seconds, report, rss, scores(settings.model_copy(update={"scoring": "local"}), texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--tasks", type=int, default=11_000)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--processes", default="1,2", help="Comma-separated worker process counts.")
    args = parser.parse_args()
    texts = [example.text for example in pool_texts(args.tasks)]
    with tempfile.TemporaryDirectory(prefix="alvar-fanout-", dir="/tmp") as tmp:
        root = Path(tmp)
        model_dir = Path(shutil.copytree(args.model_dir, root / "models"))
        base = load_settings(model_dir=model_dir, scoring_chunk_size=args.chunk)
        local_settings = base.model_copy(update={"cache_dir": root / "cache-local", "scoring": "local"})
        started = time.perf_counter()
        local = scores(local_settings, texts)
        local_seconds = time.perf_counter() - started
        print(f"{len(texts)} texts, chunks of {args.chunk}, {os.cpu_count()} cores; local (this process, "
              f"{base.torch_threads} torch threads): {local_seconds:.1f} s ({len(texts) / local_seconds:.0f} texts/s)")
        print(f"{'processes':>9} {'threads':>7} {'seconds':>8} {'vs local':>8} {'max|dp|':>9} {'argmax':>8} "
              f"{'max|de|':>9} {'chunks':>6} {'s/chunk':>8} {'re-runs':>7}  peak RSS per worker (MiB)")
        costs: dict[int, tuple[float, float, int]] = {}
        for processes in (int(value) for value in args.processes.split(",")):
            run_root = root / f"fanout-{processes}"
            settings = base.model_copy(update={"cache_dir": run_root / "cache"})
            seconds, report, rss, (probabilities, embeddings) = fanned_out(run_root, settings, texts, processes)
            per_chunk = statistics.median(chunk.seconds for chunk in report.chunks if chunk.seconds is not None)
            costs[processes] = (per_chunk, seconds, len(report.chunks))
            agreement = float((probabilities.argmax(axis=1) == local[0].argmax(axis=1)).mean())
            print(f"{processes:>9} {max(1, (os.cpu_count() or 1) // processes):>7} {seconds:>8.1f} "
                  f"{local_seconds / seconds:>7.2f}x {np.abs(probabilities - local[0]).max():>9.2e} "
                  f"{agreement:>8.2%} {np.abs(embeddings - local[1]).max():>9.2e} {len(report.chunks):>6} "
                  f"{per_chunk:>8.2f} {sum(chunk.runs - 1 for chunk in report.chunks):>7}  "
                  f"{', '.join(f'{value:.0f}' for value in rss)}")
        if 1 in costs:
            per_chunk, seconds, chunks = costs[1]
            overhead = max(0.0, seconds - chunks * per_chunk)
            print(f"N machines (each like this one, one worker process using its {os.cpu_count()} cores): "
                  f"time ~= {chunks} chunks x {per_chunk:.2f} s / N + {overhead:.1f} s overhead (model loads, "
                  "queueing, collecting)")
            print("  " + ", ".join(f"N={machines}: {chunks * per_chunk / machines + overhead:.0f} s"
                                   for machines in (1, 2, 4, 8, 16)))
            print(f"  for 10M texts ({10_000_000 // args.chunk * 2} chunks of {args.chunk}): "
                  + ", ".join(f"N={machines}: {10_000_000 / args.chunk * 2 * per_chunk / machines / 60:.0f} min"
                              for machines in (1, 4, 16, 64)))
        print("On this 2-core machine, 2 worker processes share the cores 1 would use: they prove the fan-out "
              "correct (same scores, nothing lost or doubled), not faster.")


if __name__ == "__main__":
    main()
