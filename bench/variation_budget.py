"""The variation policies against each other: class evenness of the final dataset and macro-F1 (issue 13).

    python bench/variation_budget.py [--strategies random,cluster] [--seeds 5] [--out DIR]

`alvar simulate --generator llm` on the safety data (pool and eval = the two stratified halves of
test_labeled.tsv per seed, bootstrap = bootstrap_labeled.tsv, 5 rounds of 20 = 100 human labels, k = 5, fast
learner), once per policy (ALVAR_VARIATION_POLICY fixed, then balance with the default bounds), against the tests'
loopback LLM (tests/chat_server.py). Its variations are stand-ins: the source text followed by "(said another
way, take N)", no paraphrase, so they weigh their source's label in the dataset and in training but add no new
wording. Prints, per strategy and policy, the variations written, the class-count std of the final dataset
(the 100 human labels and their variations: the paper's Table 3 measure over 600 rows under fixed) and macro-F1,
mean ± sd over the seeds. Target: balance std <= 20 with macro-F1 not below fixed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alvar.experiments.simulate import Simulation, simulate, write_outputs  # noqa: E402
from alvar.settings import load_settings  # noqa: E402
from tests.chat_server import ChatServer  # noqa: E402

DATASETS = Path(__file__).resolve().parents[2] / "shared/datasets/active-learning-safety"
POLICIES = ("fixed", "balance")


def _mean_sd(values: list[float], scale: float = 1.0) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{scale * statistics.mean(values):.1f} ± {scale * sd:.1f}"


def _final(simulation: Simulation, strategy: str) -> list[dict]:
    last = max(row["round"] for row in simulation.rows)
    return [row for row in simulation.rows if row["strategy"] == strategy and row["round"] == last]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", default="random,cluster")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="keep each policy's simulate outputs here")
    args = parser.parse_args()
    strategies = [name.strip() for name in args.strategies.split(",") if name.strip()]
    print("| strategy | policy | variations | class-count std of the dataset | macro-F1 % | seconds |")
    print("|---|---|---|---|---|---|", flush=True)
    with ChatServer() as llm:
        for policy in POLICIES:
            settings = load_settings(openai_base_url=llm.base_url, openai_api_key="loopback", llm_model="loopback",
                                     variations=5, variation_policy=policy)
            started = time.perf_counter()
            simulation = simulate(settings, DATASETS / "test_labeled.tsv", None, DATASETS / "bootstrap_labeled.tsv",
                                  strategies, rounds=5, per_round=20, seeds=args.seeds, generator="llm")
            seconds = time.perf_counter() - started
            if args.out is not None:
                write_outputs(simulation, args.out / policy, f"bench/variation_budget.py ({policy})")
            for strategy in strategies:
                final = _final(simulation, strategy)
                print(f"| {strategy} | {policy} | {statistics.mean(row['n_variations'] for row in final):.0f} "
                      f"| {_mean_sd([row['dataset_class_count_std'] for row in final])} "
                      f"| {_mean_sd([row['macro_f1'] for row in final], 100)} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
