"""What `alvar coverage` writes and prints: the picture (``coverage.png``), the per-cluster table as
``clusters.csv``, and the same table in the terminal.

The picture projects the embeddings on their first two principal components (PCA, fitted on the pool). PCA
rather than UMAP or t-SNE: it is linear, so the k-means centres and the variations land where their embeddings
are (one fitted map for every point, and the same picture on every run); it needs nothing beyond scikit-learn
and takes well under a second on a pool of thousands. The price: two components keep only part of the variance
(the axis labels say how much), so clusters that are apart in the embedding space may overlap on the page; the
numbers on the centres and the table are the exact account.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from rich.markup import escape
from rich.table import Table

from alvar.loop.coverage import ClusterRow, Coverage
from alvar.plots import save_figure
from alvar.scripts.render import console

PICTURE_FILE = "coverage.png"
TABLE_FILE = "clusters.csv"
TABLE_COLUMNS = ("cluster", "size", "labelled", "variations", "mean_entropy")
UNLABELLED_COLOUR = "#d0d0d0"


def write_table(rows: list[ClusterRow], path: Path) -> Path:
    """One row per cluster; ``mean_entropy`` is blank when no model is trained."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(TABLE_COLUMNS)
        for row in rows:
            writer.writerow([row.cluster, row.size, row.labelled, row.variations,
                             "" if row.mean_entropy is None else f"{row.mean_entropy:.4f}"])
    return path


def print_table(coverage: Coverage) -> None:
    """The per-cluster table; a cluster without a label is marked, and the count of them closes the table."""
    entropy = f"entropy of model {coverage.model_version}" if coverage.model_version else "no model trained: no entropy"
    table = Table(title=f"coverage of {escape(coverage.pool.title)}",
                  caption=f"{coverage.n_clusters} k-means clusters; {entropy}")
    for column in TABLE_COLUMNS:
        table.add_column(column.replace("_", " "), justify="right")
    for row in coverage.rows():
        style = "yellow" if row.labelled == 0 else None
        table.add_row(str(row.cluster), str(row.size), str(row.labelled), str(row.variations),
                      "" if row.mean_entropy is None else f"{row.mean_entropy:.3f}", style=style)
    console.print(table)
    console.print(f"{len(coverage.unlabelled_clusters)} of {coverage.n_clusters} clusters have no labelled task yet")


def _projection(coverage: Coverage) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[float]]:
    """2-D coordinates of the pool, the variations and the centres, and the share of variance each axis keeps."""
    from sklearn.decomposition import PCA

    embeddings = coverage.embeddings.astype(np.float64)
    components = min(2, len(embeddings), embeddings.shape[1])
    pca = PCA(n_components=components).fit(embeddings)

    def flat(points: np.ndarray) -> np.ndarray:
        projected = pca.transform(points.astype(np.float64)) if len(points) else np.zeros((0, components))
        return np.pad(projected, ((0, 0), (0, 2 - components)))

    explained = [*pca.explained_variance_ratio_.tolist(), *[0.0] * (2 - components)]
    return flat(embeddings), flat(coverage.variation_embeddings), flat(coverage.clustering.centres), explained


def draw(coverage: Coverage, path: Path) -> Path:
    """Unlabelled tasks in light grey, labelled ones coloured by class, variations as triangles in their class's
    colour, the current batch ringed in black, and each cluster's number at its centre."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pool, variations, centres, explained = _projection(coverage)
    labels = [item.label for item in coverage.pool.pool]
    labelled = coverage.pool.labelled
    classes = coverage.pool.classes
    palette = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    colour = {label: palette(index % palette.N) for index, label in enumerate(classes)}

    figure, axis = plt.subplots(figsize=(9, 7))
    axis.scatter(pool[~labelled, 0], pool[~labelled, 1], s=6, c=UNLABELLED_COLOUR, linewidths=0,
                 label=f"unlabelled ({int((~labelled).sum())})")
    for label in classes:
        mine = np.array([found == label for found in labels], dtype=bool)
        if mine.any():
            axis.scatter(pool[mine, 0], pool[mine, 1], s=22, color=colour[label], edgecolors="white",
                         linewidths=0.4, label=f"{label} ({int(mine.sum())})")
    if len(variations):
        axis.scatter(variations[:, 0], variations[:, 1], s=26, marker="^", linewidths=0.4, edgecolors="black",
                     c=[colour.get(item.label or "", UNLABELLED_COLOUR) for item in coverage.pool.variations],
                     label=f"variations ({len(variations)}, ▲ in their class's colour)")
    picked = np.array([item.in_batch for item in coverage.pool.pool], dtype=bool)
    if picked.any():
        name = f"batch {coverage.pool.batch}" if coverage.pool.batch is not None else "batch"
        axis.scatter(pool[picked, 0], pool[picked, 1], s=90, facecolors="none", edgecolors="black", linewidths=1.2,
                     label=f"{name} ({int(picked.sum())})")
    uncovered = set(coverage.unlabelled_clusters)
    for cluster, (x, y) in enumerate(centres):
        axis.annotate(str(cluster), (x, y), ha="center", va="center", fontsize=8, weight="bold",
                      color="#b00000" if cluster in uncovered else "black",
                      bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75})
    axis.set_xlabel(f"PC1 ({100 * explained[0]:.0f} % of variance)")
    axis.set_ylabel(f"PC2 ({100 * explained[1]:.0f} % of variance)")
    axis.set_title(f"{coverage.pool.title}: {len(pool)} pool tasks, {int(labelled.sum())} labelled; "
                   f"{len(uncovered)} of {coverage.n_clusters} clusters (numbers, red) without a label",
                   fontsize=10)
    axis.legend(fontsize=8, loc="best", markerscale=1.2, framealpha=0.85)
    save_figure(figure, path)
    return path


def write_outputs(coverage: Coverage, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    return [draw(coverage, out / PICTURE_FILE), write_table(coverage.rows(), out / TABLE_FILE)]
