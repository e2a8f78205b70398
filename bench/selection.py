"""Selection speed: strategies on synthetic pools, and our embedding against sentence-transformers' encode.

    python bench/selection.py [--sizes 10000,100000,1000000] [--budget 100]

Part 1 times each strategy from cached embeddings (384-d unit vectors) and entropies, with, as the
baseline measured in the same run, scikit-learn's full KMeans where it is affordable. Target: cluster on 1M
rows <= 10 s. Part 2 embeds the safety texts with `Embedder` (cold and warm cache) and with
`SentenceTransformer.encode` at its defaults, on the same model and threads, and prints the ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sklearn.cluster import KMeans

from alvar.datafiles import read_dataset
from alvar.embedder import Embedder
from alvar.settings import load_settings
from alvar.strategies import Pool, make_strategy

DATASETS = Path(__file__).resolve().parents[2] / "shared/datasets/active-learning-safety"


def synthetic_pool(size: int, dims: int = 384, seed: int = 0) -> Pool:
    """Clustered unit vectors (like sentence embeddings), random entropies, 5 % already labeled."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(50, dims)).astype(np.float32)
    embeddings = centers[rng.integers(50, size=size)] + rng.normal(scale=0.8, size=(size, dims)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    eligible = rng.random(size) > 0.05
    return Pool(embeddings, rng.random(size) * np.log(6), eligible, embeddings[~eligible][:200])


def seconds(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def strategies_table(sizes: list[int], budget: int) -> None:
    print(f"| pool rows | random | topn | coreset | cluster (K={budget}) | full KMeans baseline | cluster speed-up |")
    print("|---|---|---|---|---|---|---|")
    for size in sizes:
        pool = synthetic_pool(size)
        times = {name: seconds(lambda name=name, pool=pool: make_strategy(name).select(pool, budget))
                 for name in ("random", "topn", "coreset", "cluster")}
        if size <= 100_000:
            points = pool.embeddings[pool.eligible]
            baseline = seconds(lambda points=points: KMeans(n_clusters=budget, n_init=1, random_state=0).fit(points))
            ratio = f"{baseline / times['cluster']:.1f}x"
            baseline_text = f"{baseline:.2f} s"
        else:
            baseline_text, ratio = "not run (too slow)", "-"
        print(f"| {size:,} | {times['random']:.2f} s | {times['topn']:.2f} s | {times['coreset']:.2f} s | "
              f"{times['cluster']:.2f} s | {baseline_text} | {ratio} |", flush=True)


def embedding_ratio(settings) -> None:
    texts = [text for name in ("test_labeled.tsv", "bootstrap_labeled.tsv", "dev_labeled.tsv", "cluster-all.tsv")
             for text in read_dataset(DATASETS / name).texts]
    torch.set_num_threads(settings.torch_threads)
    model = SentenceTransformer(settings.embedding_model, device="cpu")
    model.encode(texts[:64])
    baseline = seconds(lambda: model.encode(texts))
    with tempfile.TemporaryDirectory() as cache:
        embedder = Embedder(settings.embedding_model, cache_path=Path(cache) / "vectors.sqlite",
                            num_threads=settings.torch_threads)
        embedder._encoder = model
        cold = seconds(lambda: embedder.embed(texts))
        warm = seconds(lambda: embedder.embed(texts))
        same = np.abs(embedder.embed(texts) - model.encode(texts, normalize_embeddings=True)).max()
    print(f"\nembedding {len(texts)} texts ({len(set(texts))} distinct), {settings.torch_threads} threads:")
    print("| embedder | seconds | texts/s | ratio to encode() |\n|---|---|---|---|")
    print(f"| SentenceTransformer.encode (defaults) | {baseline:.2f} | {len(texts) / baseline:.0f} | 1.0x |")
    print(f"| alvar Embedder, cold cache | {cold:.2f} | {len(texts) / cold:.0f} | {baseline / cold:.1f}x |")
    print(f"| alvar Embedder, warm cache | {warm:.2f} | {len(texts) / warm:.0f} | {baseline / warm:.0f}x |")
    print(f"max |difference| to encode(normalize_embeddings=True): {same:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--budget", type=int, default=100)
    args = parser.parse_args()
    strategies_table([int(size) for size in args.sizes.split(",")], args.budget)
    embedding_ratio(load_settings())


if __name__ == "__main__":
    main()
