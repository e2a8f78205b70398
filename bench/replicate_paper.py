"""The learner table of docs/replication.md: `alvar train` on bootstrap + each released split, `alvar predict` on test.

    python bench/replicate_paper.py --seeds 3 --out bench/results/paper

Prints a markdown table of macro-F1 (mean and sd over seeds) next to the paper's bert-base-cased numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from sklearn.metrics import f1_score

PAPER_BERT_BASE = {"bootstrap only": 40.7, "random": 63.7, "topn": 63.2, "coreset": 66.1, "cluster": 66.3}
SPLITS = {"bootstrap only": None, "random": "random-all.tsv", "topn": "topn-all.tsv",
          "coreset": "coreset-all.tsv", "cluster": "cluster-all.tsv"}
ALVAR = [str(Path(sys.executable).with_name("alvar"))]


def macro_f1(predictions: Path) -> float:
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    return 100 * f1_score([r["gold"] for r in rows], [r["label"] for r in rows], average="macro")


def run(split: str, seed: int, datasets: Path, out: Path) -> float:
    model_dir = out / f"{split.replace(' ', '-')}-seed{seed}"
    data = ["--data", str(datasets / "bootstrap_labeled.tsv")]
    if SPLITS[split]:
        data += ["--data", str(datasets / SPLITS[split])]
    subprocess.run([*ALVAR, "train", *data, "--model-dir", str(model_dir), "--seed", str(seed)], check=True)
    predictions = model_dir / "test-predictions.jsonl"
    subprocess.run([*ALVAR, "predict", "--model-dir", str(model_dir), "--input",
                    str(datasets / "test_labeled.tsv"), "--out", str(predictions)], check=True)
    return macro_f1(predictions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared/datasets/active-learning-safety")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="Run seeds first-seed .. first-seed + seeds - 1.")
    parser.add_argument("--out", type=Path, default=Path("bench/results/paper"))
    args = parser.parse_args()
    lines = ["| training data | macro-F1 (mean ± sd) | per seed | paper, bert-base-cased |", "|---|---|---|---|"]
    for split in SPLITS:
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        scores = [run(split, seed, args.datasets, args.out) for seed in seeds]
        spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
        lines.append(f"| bootstrap{' + ' + split if SPLITS[split] else ' only'} | {statistics.mean(scores):.1f} ± "
                     f"{spread:.1f} | {', '.join(f'{s:.1f}' for s in scores)} | "
                     f"{PAPER_BERT_BASE[split]} |")
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    (args.out / "table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
