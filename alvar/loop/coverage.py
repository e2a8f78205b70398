"""`alvar coverage`: which regions of the pool hold labels, and which hold none yet.

The pool is clustered by k-means over its sentence embeddings (:func:`alvar.strategies.fit_kmeans`, the
clustering of the cluster strategy). Variations are placed in the cluster of their nearest centre but never move
the centres: they are rewrites of labelled texts, and the clusters describe the pool people label. Per cluster:
its size (pool tasks), how many of them carry a label, how many variations it holds, and the mean entropy of its
tasks under the current model (None when no model is trained).

The pool comes from a Label Studio project (:func:`project_pool`) or from files (:func:`file_pool`). `alvar
status` counts the clusters without a label from cached embeddings only (:func:`cached_label_cover`), so it
never loads a model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from label_studio_sdk import LabelStudio

from alvar.datafiles import read_dataset
from alvar.embedder import VECTOR_CACHE_FILE, settings_embedder, settings_namespace
from alvar.errors import AlvarError
from alvar.labelstudio.batches import latest_batch
from alvar.labelstudio.choices_control import ChoicesControl, parse_choices_control
from alvar.labelstudio.client import as_dict
from alvar.labelstudio.task_data import data_of
from alvar.labelstudio.training_data import LabelledItem, is_variation, labelled_items
from alvar.loop.selection import pool_entropy
from alvar.settings import Settings
from alvar.strategies import ASSIGN_CHUNK, DEFAULT_CLUSTERS, fit_kmeans
from alvar.vector_cache import VectorCache, text_key


class CoverageError(AlvarError, ValueError):
    """A coverage that cannot be computed: an empty pool, or more clusters than pool tasks."""


@dataclass(frozen=True)
class Item:
    """One text of the picture: its class (None while nobody has labelled it) and whether the current batch holds
    it."""

    text: str
    label: str | None = None
    in_batch: bool = False


@dataclass(frozen=True)
class CoveragePool:
    """What a coverage is computed on: the pool (clustered), the variations (placed among it), the current batch
    (``batch``, its number in a project; None when it has none or in file mode), and the project whose model
    scores the entropy (None: the shared model)."""

    title: str
    pool: list[Item]
    variations: list[Item] = field(default_factory=list)
    batch: int | None = None
    project_id: int | None = None

    @property
    def classes(self) -> list[str]:
        return sorted({item.label for item in [*self.pool, *self.variations] if item.label is not None})

    @property
    def labelled(self) -> np.ndarray:
        return np.array([item.label is not None for item in self.pool], dtype=bool)


def _by_key(texts: Sequence[str]) -> set[bytes]:
    return {text_key(text) for text in texts}


def file_pool(pool_file: Path, labeled_file: Path | None = None, variations_file: Path | None = None,
              batch_file: Path | None = None, text_col: str | None = None,
              label_col: str | None = None) -> CoveragePool:
    """The pool of files. The pool file's own labels are not read (a pool is what people have not labelled yet);
    the labelled file's texts carry its labels, and join the pool when the pool lacks them. Variations: a labelled
    file of generated texts. The batch: a file of the texts picked (`alvar select --out`'s JSONL)."""
    pool = read_dataset(pool_file, text_col, label_col)
    labels: dict[bytes, str] = {}
    joined: list[Item] = []
    if labeled_file is not None:
        labeled = read_dataset(labeled_file, text_col, label_col)
        pool_keys = _by_key(pool.texts)
        for text, label in zip(labeled.texts, labeled.labels):
            key = text_key(text)
            if key not in pool_keys and key not in labels:
                joined.append(Item(text, label))
            labels.setdefault(key, label)
    picked = _by_key(read_dataset(batch_file, text_col, label_col).texts) if batch_file is not None else set()
    items = [Item(text, labels.get(text_key(text)), text_key(text) in picked) for text in pool.texts]
    variations: list[Item] = []
    if variations_file is not None:
        generated = read_dataset(variations_file, text_col, label_col)
        variations = [Item(text, label) for text, label in zip(generated.texts, generated.labels)]
    title = pool_file.name if labeled_file is None else f"{pool_file.name} + {labeled_file.name}"
    return CoveragePool(title, [*items, *joined], variations)


def _text(task: dict[str, Any], control: ChoicesControl) -> str | None:
    """A task's text, or None when it has none (such a task is neither drawn nor counted)."""
    text = data_of(task).get(control.data_key)
    return text if isinstance(text, str) and text.strip() else None


# What `alvar status` reads of each task: its text and annotation count (2,850 tasks: about 1 s, against 6 s for
# every field with the annotations).
LIGHT_FIELDS = "id,data,total_annotations"


def _project_tasks(client: LabelStudio, project_id: int,
                   light: bool = False) -> tuple[ChoicesControl, list[dict[str, Any]]]:
    """The project's label config and its tasks in id order (the order k-means sees them in, here and in
    `alvar status`): with their annotations, or ``light`` (:data:`LIGHT_FIELDS`)."""
    control = parse_choices_control(client.projects.get(id=project_id).label_config)
    pages: Iterable[Any] = client.tasks.list(project=project_id, page_size=1000, include=LIGHT_FIELDS) if light \
        else client.tasks.list(project=project_id, page_size=1000, fields="all")
    tasks = [as_dict(task) for task in pages]
    return control, sorted(tasks, key=lambda task: int(task["id"]))


def project_pool(client: LabelStudio, project_id: int) -> CoveragePool:
    """A project's pool: every task that is not a variation, with the label of its latest annotation; the
    variations that count (current, not judged invalid: :func:`labelled_items` with unreviewed ones), with their
    reviewer's label, else their pre-label; and the tasks the latest batch picked."""
    control, tasks = _project_tasks(client, project_id)
    latest = latest_batch(tasks)
    in_batch = {task["id"] for task in latest.picked} if latest is not None else set()
    kept = {item.task["id"]: item.label for item in labelled_items(tasks, control, include_unverified=True)
            if isinstance(item, LabelledItem)}
    pool: list[Item] = []
    variations: list[Item] = []
    for task in tasks:
        text = _text(task, control)
        if text is None:
            continue
        if not is_variation(task):
            pool.append(Item(text, kept.get(task["id"]), task["id"] in in_batch))
        elif task["id"] in kept:
            variations.append(Item(text, kept[task["id"]]))
    return CoveragePool(f"project {project_id}", pool, variations, latest.number if latest else None, project_id)


@dataclass(frozen=True)
class ClusterRow:
    """One cluster of the table: pool tasks, labelled ones, variations placed in it, mean entropy (None without a
    model)."""

    cluster: int
    size: int
    labelled: int
    variations: int
    mean_entropy: float | None


def nearest_centre(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """The cluster of each point: its nearest centre (in chunks, so a large pool never makes a huge matrix)."""
    if len(points) == 0:
        return np.zeros(0, dtype=np.int64)
    centre_norms = np.einsum("ij,ij->i", centres, centres)
    return np.concatenate([np.argmin(centre_norms[None, :] - 2.0 * points[start : start + ASSIGN_CHUNK] @ centres.T,
                                     axis=1)
                           for start in range(0, len(points), ASSIGN_CHUNK)])


@dataclass(frozen=True)
class Clustering:
    """k-means centres over the pool's embeddings and each pool task's cluster."""

    centres: np.ndarray
    clusters: np.ndarray


def check_clusters(n_pool: int, n_clusters: int) -> None:
    """A clear error before anything is embedded: an empty pool, or K outside 1..pool size."""
    if n_pool == 0:
        raise CoverageError("the pool is empty: nothing to cluster (import or give a pool first)")
    if not 1 <= n_clusters <= n_pool:
        raise CoverageError(f"--clusters must be between 1 and the pool's size ({n_pool}), got {n_clusters}")


def cluster_pool(embeddings: np.ndarray, n_clusters: int, seed: int) -> Clustering:
    check_clusters(len(embeddings), n_clusters)
    model = fit_kmeans(embeddings, n_clusters, seed)
    centres = np.asarray(model.cluster_centers_, dtype=np.float64)
    return Clustering(centres, nearest_centre(embeddings.astype(np.float64), centres))


@dataclass(frozen=True)
class Coverage:
    """A pool clustered, its variations placed, and each pool task's entropy (None without a trained model)."""

    pool: CoveragePool
    embeddings: np.ndarray
    variation_embeddings: np.ndarray
    clustering: Clustering
    variation_clusters: np.ndarray
    entropy: np.ndarray | None = None
    model_version: str | None = None

    @property
    def n_clusters(self) -> int:
        return len(self.clustering.centres)

    def rows(self) -> list[ClusterRow]:
        clusters, labelled = self.clustering.clusters, self.pool.labelled
        rows = []
        for cluster in range(self.n_clusters):
            members = clusters == cluster
            mean = float(self.entropy[members].mean()) if self.entropy is not None and members.any() else None
            rows.append(ClusterRow(cluster, int(members.sum()), int((members & labelled).sum()),
                                   int((self.variation_clusters == cluster).sum()), mean))
        return rows

    @property
    def unlabelled_clusters(self) -> list[int]:
        return clusters_without_label(self.clustering.clusters, self.pool.labelled, self.n_clusters)


def clusters_without_label(clusters: np.ndarray, labelled: np.ndarray, n_clusters: int) -> list[int]:
    """The clusters (of ``0 .. n_clusters - 1``) none of whose tasks is labelled."""
    covered = set(clusters[labelled].tolist())
    return [cluster for cluster in range(n_clusters) if cluster not in covered]


def _entropy(settings: Settings, pool: CoveragePool) -> tuple[str | None, np.ndarray | None]:
    """The pool's entropy under the serving model, or (None, None) when none is trained yet: the table says so
    by leaving the column blank."""
    try:
        version, values = pool_entropy(settings, [item.text for item in pool.pool], pool.project_id)
    except FileNotFoundError:
        return None, None
    return version, values


def compute_coverage(settings: Settings, pool: CoveragePool, n_clusters: int = DEFAULT_CLUSTERS,
                     seed: int = 0) -> Coverage:
    """Embed (cached), cluster and score the pool; place the variations."""
    check_clusters(len(pool.pool), n_clusters)
    embedder = settings_embedder(settings, show_progress=True)
    embeddings = embedder.embed([item.text for item in pool.pool])
    variation_embeddings = embedder.embed([item.text for item in pool.variations]) if pool.variations \
        else np.zeros((0, embeddings.shape[1]), dtype=np.float32)
    clustering = cluster_pool(embeddings, n_clusters, seed)
    version, entropy = _entropy(settings, pool)
    return Coverage(pool, embeddings, variation_embeddings, clustering,
                    nearest_centre(variation_embeddings.astype(np.float64), clustering.centres), entropy, version)


@dataclass(frozen=True)
class LabelCover:
    """For `alvar status`: how many of the pool's clusters hold no labelled task yet. ``not_embedded`` counts pool
    texts without a cached embedding; while there are any, nothing is clustered (``unlabelled`` is None)."""

    clusters: int
    unlabelled: int | None
    not_embedded: int = 0

    def line(self) -> str:
        if self.unlabelled is None:
            return (f"{self.not_embedded} pool tasks not embedded yet (`alvar select` or `alvar coverage` embeds "
                    "them)")
        return f"{self.unlabelled} of {self.clusters} clusters have no labelled task yet"


def cached_label_cover(settings: Settings, client: LabelStudio, project_id: int,
                       n_clusters: int = DEFAULT_CLUSTERS, seed: int = 0) -> LabelCover:
    """The clusters of :func:`compute_coverage` that hold no labelled task, from cached embeddings only (never
    loads a model) and a light task listing (:data:`LIGHT_FIELDS`). Here a task is labelled when it has an
    annotation (coverage reads the annotations themselves: the two differ only for an annotation with no valid
    choice). A pool smaller than ``n_clusters`` has one cluster per task."""
    control, tasks = _project_tasks(client, project_id, light=True)
    pool = [(text, bool(task.get("total_annotations"))) for task in tasks
            if not is_variation(task) and (text := _text(task, control)) is not None]
    clusters = min(n_clusters, len(pool))
    if clusters == 0:
        return LabelCover(0, 0)
    keys = [text_key(text) for text, _ in pool]
    cached = VectorCache(settings.cache_dir / VECTOR_CACHE_FILE, settings_namespace(settings)).get(keys)
    missing = sum(key not in cached for key in keys)
    if missing:
        return LabelCover(clusters, None, missing)
    clustering = cluster_pool(np.stack([cached[key] for key in keys]), clusters, seed)
    labelled = np.array([annotated for _, annotated in pool], dtype=bool)
    return LabelCover(clusters, len(clusters_without_label(clustering.clusters, labelled, clusters)))
