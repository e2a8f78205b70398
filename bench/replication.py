"""The paper-replication tables (docs/replication.md), from `alvar evaluate` and the released splits.

    python bench/replication.py [--seeds 5] [--models embedding-lr,tfidf-lr] [--out bench/results/replication]

(a) bootstrap + each released split -> test_labeled.tsv: macro-F1 per model, mean ± sd over seeds, next to
    the paper's bert-base-cased numbers (each row is one `alvar evaluate` command, printed above the table);
(c) the standard deviation of the class counts of each released 600-row split, next to the paper's Table 3.
The simulation table (b) is `alvar simulate` (see docs/selection.md).
"""

from __future__ import annotations

import argparse
import csv
import shlex
import subprocess
import sys
from pathlib import Path

from alvar.datafiles import read_dataset
from alvar.metrics import class_count_std, class_counts

DATASETS = Path(__file__).resolve().parents[2] / "shared/datasets/active-learning-safety"
SPLITS = {"bootstrap only": None, "random": "random-all.tsv", "topn": "topn-all.tsv",
          "coreset": "coreset-all.tsv", "cluster": "cluster-all.tsv"}
PAPER_F1 = {"bootstrap only": 40.7, "random": 63.7, "topn": 63.2, "coreset": 66.1, "cluster": 66.3}
PAPER_STD = {"random": 57.6, "topn": 47.6, "coreset": 65.3, "cluster": 41.4}
ALVAR = str(Path(sys.executable).with_name("alvar"))


def evaluate_split(split: str, models: str, seeds: int, out: Path) -> dict[str, tuple[float, float]]:
    train = ["--train", str(DATASETS / "bootstrap_labeled.tsv")]
    if SPLITS[split]:
        train += ["--train", str(DATASETS / SPLITS[split])]
    target = out / split.replace(" ", "-")
    command = [ALVAR, "evaluate", *train, "--test", str(DATASETS / "test_labeled.tsv"), "--models", models,
               "--seeds", str(seeds), "--out", str(target)]
    print("$", shlex.join(["alvar", *command[1:]]), flush=True)
    subprocess.run(command, check=True, capture_output=True)
    with (target / "summary.csv").open() as handle:
        return {row["model"]: (100 * float(row["macro_f1_mean"]), 100 * float(row["macro_f1_sd"]))
                for row in csv.DictReader(handle)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--models", default="embedding-lr,tfidf-lr")
    parser.add_argument("--out", type=Path, default=Path("bench/results/replication"))
    args = parser.parse_args()
    results = {split: evaluate_split(split, args.models, args.seeds, args.out) for split in SPLITS}
    models = args.models.split(",")
    print(f"\n| training data | {' | '.join(models)} | paper bert-base-cased |")
    print("|---|" + "---|" * (len(models) + 1))
    for split, by_model in results.items():
        cells = [f"{by_model[model][0]:.1f} ± {by_model[model][1]:.1f}" for model in models]
        print(f"| bootstrap + {split} | {' | '.join(cells)} | {PAPER_F1[split]} |".replace("+ bootstrap only", "only"))
    classes = sorted(set(read_dataset(DATASETS / "test_labeled.tsv").labels))
    print(f"\n| released split | {' | '.join(classes)} | std of counts | paper (Table 3) |")
    print("|---|" + "---|" * (len(classes) + 2))
    for split, name in SPLITS.items():
        if name is None:
            continue
        labels = read_dataset(DATASETS / name).labels
        counts = class_counts(labels, classes)
        print(f"| {split} | {' | '.join(map(str, counts))} | {class_count_std(labels, classes):.1f} | "
              f"{PAPER_STD[split]} |")


if __name__ == "__main__":
    main()
