"""Class mix of the batches each strategy selects (the paper's Table 3 measure), over several seeds.

    python bench/class_balance.py --model-dir DIR [--budget 100] [--seeds 5]

Pool: test_labeled.tsv (its gold labels are only counted, never shown to the selector); labeled:
bootstrap_labeled.tsv. The learner in DIR scores the pool (train one first: `alvar train --data
bootstrap_labeled.tsv --model-dir DIR`). Prints class counts (mean over seeds) and the std of the counts.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from alvar.datafiles import read_dataset
from alvar.loop.select import select_file
from alvar.metrics import class_count_std, class_counts
from alvar.settings import load_settings

DATASETS = Path(__file__).resolve().parents[2] / "shared/datasets/active-learning-safety"
PAPER = {"random": 57.6, "topn": 47.6, "coreset": 65.3, "cluster": 41.4}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    settings = load_settings(model_dir=args.model_dir)
    pool = read_dataset(DATASETS / "test_labeled.tsv")
    gold = {example.id: example.label for example in pool.examples}
    classes = sorted(set(pool.labels))
    print(f"| strategy | {' | '.join(classes)} | std of counts (mean ± sd over {args.seeds} seeds) "
          "| paper (600-row split) |")
    print("|---|" + "---|" * len(classes) + "---|---|")
    stds: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in PAPER:
            counts, stds[strategy] = [], []
            for seed in range(args.seeds):
                _, rows = select_file(settings, DATASETS / "test_labeled.tsv", Path(tmp) / "batch.jsonl", strategy,
                                      args.budget, seed, DATASETS / "bootstrap_labeled.tsv")
                labels = [gold[row["id"]] for row in rows]
                counts.append(class_counts(labels, classes))
                stds[strategy].append(class_count_std(labels, classes))
            means = [statistics.mean(column) for column in zip(*counts)]
            print(f"| {strategy} | {' | '.join(f'{m:.1f}' for m in means)} | {statistics.mean(stds[strategy]):.1f} ± "
                  f"{statistics.stdev(stds[strategy]):.1f} | {PAPER[strategy]} |", flush=True)
    verdict = "more even" if statistics.mean(stds["cluster"]) < statistics.mean(stds["random"]) else "not more even"
    print(f"\ncluster is {verdict} than random at budget {args.budget} "
          f"({statistics.mean(stds['cluster']):.1f} vs {statistics.mean(stds['random']):.1f}).")


if __name__ == "__main__":
    main()
