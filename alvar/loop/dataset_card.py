"""The exported dataset's card (``README.md``): counts, class balance, provenance, agreement, how to load."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sklearn.metrics import cohen_kappa_score

from alvar.labelstudio.task_data import LLM_ORIGIN
from alvar.metrics import class_count_std, class_counts

MIN_SHARED_TASKS = 2


def agreement(annotations: Mapping[int, Mapping[str, str]]) -> list[tuple[str, str, int, float]]:
    """Cohen's kappa for every pair of annotators who labelled at least two of the same tasks."""
    pairs: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for labels in annotations.values():
        for first, second in itertools.combinations(sorted(labels), 2):
            pairs.setdefault((first, second), []).append((labels[first], labels[second]))
    found = []
    for (first, second), shared in sorted(pairs.items()):
        if len(shared) < MIN_SHARED_TASKS:
            continue
        left, right = zip(*shared)
        kappa = 1.0 if left == right else float(cohen_kappa_score(left, right))
        found.append((first, second, len(shared), kappa))
    return found


def _balance_table(rows: Sequence[Any], classes: Sequence[str]) -> list[str]:
    groups = sorted({row.strategy or "(none)" for row in rows})
    lines = ["| class | " + " | ".join(groups) + " | all |", "|---|" + "---|" * (len(groups) + 1)]
    labels_by_group = {group: [row.label for row in rows if (row.strategy or "(none)") == group] for group in groups}
    everything = [row.label for row in rows]
    counts = {group: dict(zip(classes, class_counts(labels, classes))) for group, labels in labels_by_group.items()}
    totals = dict(zip(classes, class_counts(everything, classes)))
    for label in classes:
        lines.append(f"| {label} | " + " | ".join(str(counts[group][label]) for group in groups) +
                     f" | {totals[label]} |")
    stds = [class_count_std(labels_by_group[group], classes) for group in groups]
    lines.append("| **std of counts** | " + " | ".join(f"{value:.1f}" for value in stds) +
                 f" | {class_count_std(everything, classes):.1f} |")
    return lines


def write_card(rows: Sequence[Any], classes: Sequence[str], annotations: Mapping[int, Mapping[str, str]],
               left_out: int, out: Path, formats: Sequence[str], project_id: int | None) -> Path:
    origins = Counter(row.origin for row in rows)
    unverified = sum(1 for row in rows if not row.verified)
    models = Counter(row.llm_model for row in rows if row.origin == LLM_ORIGIN)
    relations = Counter(row.relation for row in rows if row.origin == LLM_ORIGIN)
    lines = [
        "# Dataset card", "",
        f"Exported by `alvar export`{f' from Label Studio project {project_id}' if project_id is not None else ''}: "
        f"**{len(rows)} rows**, {origins['human']} labelled by people and {origins[LLM_ORIGIN]} LLM variations "
        f"({unverified} of them not yet reviewed). {left_out} variations were left out (invalid, stale, or "
        "unreviewed without `--include-unverified`).", "",
        "## Classes per selection strategy", "",
        "Counts by the strategy that selected the row (a variation carries its source's); the last row is the "
        "sample standard deviation of the class counts (lower = more even; the paper's Table 3 measure).", "",
        *_balance_table(rows, classes), "",
        "## Provenance", "",
        "Every row keeps `origin` (human | llm), `source_task` and `source_id` (the task a variation was written "
        "from), `relation`, `strategy`, `round`, `batch`, `annotators`, `verified`, `llm_model`, and `variation_k` and "
        "`variation_reason` (how many variations its source's set was given, and why).", "",
    ]
    if models:
        lines += [f"- LLM `{model}`: {count} variations" for model, count in models.most_common()]
        lines += [f"- relation `{relation}`: {count}" for relation, count in relations.most_common()]
        lines.append("")
    lines += ["## Agreement", ""]
    kappas = agreement(annotations)
    if kappas:
        lines += ["| annotator | annotator | shared tasks | Cohen's kappa |", "|---|---|---|---|"]
        lines += [f"| {first} | {second} | {shared} | {kappa:.3f} |" for first, second, shared, kappa in kappas]
    else:
        lines.append(f"No two annotators labelled {MIN_SHARED_TASKS} or more of the same tasks.")
    lines.append("")
    lines += _files_and_loading(
        formats, "- `dataset.tsv`: the released layout (`id`, `input`, `category`); `dataset_full.tsv`: every column. "
        "Tab-separated, never quoted.", "- `dataset.jsonl`: one JSON object per row, every column.", "label", "rows")
    return _write_card(out, lines)


def _count_lines(title: str, counts: Counter[Any]) -> list[str]:
    return [f"- {title} `{value}`: {count}" for value, count in counts.most_common()]


def write_generation_card(rows: Sequence[Any], counts: Mapping[str, int], model_version: str | None, out: Path,
                          formats: Sequence[str], project_id: int | None) -> Path:
    """The card of a generative project's export: the verified pairs, what was left out, per subgroup, who
    verified them, and the teacher and student versions behind them."""
    verdicts = Counter(row.verdict for row in rows)
    left_out = counts.get("reject", 0) + counts.get("emptied", 0) + counts.get("unreviewed", 0)
    source = f" from Label Studio project {project_id}" if project_id is not None else ""
    lines = [
        "# Dataset card", "",
        f"Exported by `alvar export`{source}: **{len(rows)} verified (input, output) pairs**, {verdicts['accepted']} "
        f"accepted as drafted and {verdicts['edited']} edited by people. Left out ({left_out}): "
        f"{counts.get('reject', 0)} rejected, {counts.get('emptied', 0)} accepted or edited with the output "
        f"emptied, {counts.get('unreviewed', 0)} not reviewed yet. The student serving the project at export: "
        f"`{model_version or 'none'}`.", "",
        "## Subgroups", "",
        "| group | pairs | accepted | edited |", "|---|---|---|---|",
    ]
    for group in sorted({row.group or "(none)" for row in rows}):
        mine = [row.verdict for row in rows if (row.group or "(none)") == group]
        lines.append(f"| {group} | {len(mine)} | {mine.count('accepted')} | {mine.count('edited')} |")
    lines += [
        "", "## Provenance", "",
        "Every row keeps `verdict` (accepted | edited), `verifier` (who accepted or edited it), `attribute` (the "
        "value of the regulated attribute they set), `draft` (the teacher's text), `teacher_model`, `template`, "
        "`student_version` (at export) and `draft_student_version` (when the draft was written), `group`, "
        "`cluster`, `batch`, `strategy`, `source_id`, `task_id` and `annotation_id`.", "",
        *_count_lines("verifier", Counter(row.verifier for row in rows)),
        *_count_lines("teacher", Counter(row.teacher_model for row in rows if row.teacher_model)),
        *_count_lines("template", Counter(row.template for row in rows if row.template)),
        "",
    ]
    lines += _files_and_loading(
        formats, "- `dataset.tsv`: `id`, `input`, `output` (and `group` when the pairs have subgroups), the layout of "
        "a pair file; `dataset_full.tsv`: every column. Tab-separated, never quoted.",
        "- `dataset.jsonl`: one JSON object per pair, every column (null where a pair has none).", "verdict", "pairs")
    return _write_card(out, lines)


def _files_and_loading(formats: Sequence[str], tsv: str, jsonl: str, class_label: str, variable: str) -> list[str]:
    """The card's last section: the files written in ``formats`` and how to load the Hugging Face one."""
    lines = ["## Files and loading", ""]
    if "tsv" in formats:
        lines.append(tsv)
    if "jsonl" in formats:
        lines.append(jsonl)
    if "hf" in formats:
        lines += [f"- `hf/` (Hugging Face `datasets`, `{class_label}` a ClassLabel) and `dataset.parquet`:", "",
                  "```python", "from datasets import load_from_disk", "",
                  f"{variable} = load_from_disk(\"hf\")  "
                  "# from this folder; or pandas.read_parquet(\"dataset.parquet\")",
                  "```"]
    return lines


def _write_card(out: Path, lines: Sequence[str]) -> Path:
    path = out / "README.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
