"""Interim-output throughput of the student G: batched, length-bucketed generate against one input at a time.

    python bench/student_scoring.py [--texts FILE] [--n 256] [--quick]

Scoring a generative project's pool asks G for an output for every input. The student is first trained briefly
on a few pairs (so that its outputs end at eos like a real one's; speed does not depend on how well), then the
same inputs are written twice with the same model, greedy, the same max_output_length and the same torch thread
count: by ``TextToTextStudent.generate`` (length-sorted batches, each padded to its own longest input) and by
transformers' ``model.generate`` called for one input at a time, the baseline. Each writer runs ``--repeats``
times, alternating, and its fastest run counts. Target: >= 4x inputs/s.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alvar.backend.student import TextToTextStudent, new_student
from alvar.datafiles import read_dataset
from alvar.settings import load_settings

DATASETS = Path(__file__).resolve().parents[2] / "shared/datasets/active-learning-safety"
TRAINING_PAIRS = 16
TRAINING_EPOCHS = 3


def mixed_lengths(texts: list[str], n: int, seed: int = 0) -> list[str]:
    """``n`` texts drawn at random, so short and long ones mix as in a real pool."""
    chosen = np.random.default_rng(seed).choice(len(texts), size=min(n, len(texts)), replace=False)
    return [texts[i] for i in chosen]


def one_at_a_time(student: TextToTextStudent, inputs: list[str]) -> list[str]:
    """The baseline: ``model.generate`` on each input alone, with the student's greedy options."""
    options = student.generation_options()
    written = []
    with torch.inference_mode():
        for text in inputs:
            encoded = student.tokenizer_(text, truncation=True, max_length=student.max_input_length,
                                         return_tensors="pt")
            generated = student.model_.generate(**encoded, **options)
            written.append(student.tokenizer_.decode(generated[0], skip_special_tokens=True).strip())
    return written


def timed(function: Callable[..., list[str]], *args: Any) -> tuple[list[str], float]:
    started = time.perf_counter()
    value = function(*args)
    return value, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=Path, default=DATASETS / "test_labeled.tsv")
    parser.add_argument("--n", type=int, default=256, help="pool inputs to write outputs for")
    parser.add_argument("--quick", action="store_true", help="64 inputs, one run of each writer")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each writer, alternating; the fastest counts "
                        "(other work on the machine only slows a run down)")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 1
    settings = load_settings()
    torch.set_num_threads(settings.torch_threads)
    data = read_dataset(args.texts)
    pool = mixed_lengths(data.texts, 64 if args.quick else args.n)
    pairs = data.examples[:TRAINING_PAIRS]
    student = new_student(settings)
    student.epochs, student.batch_size = TRAINING_EPOCHS, 4
    started = time.perf_counter()
    student.fit([pair.text for pair in pairs], [f"a post about {pair.label}" for pair in pairs])
    trained_seconds = time.perf_counter() - started
    student.generate(pool[:8])
    batched_times, single_times = [], []
    for _ in range(args.repeats):
        batched, seconds = timed(student.generate, pool)
        batched_times.append(seconds)
        single, seconds = timed(one_at_a_time, student, pool)
        single_times.append(seconds)
    batched_seconds, single_seconds = min(batched_times), min(single_times)
    same = np.mean([a == b for a, b in zip(batched, single)])
    lengths = [len(student.tokenizer_(text)["input_ids"]) for text in pool]
    print(f"inputs: {len(pool)} from {args.texts.name} ({min(lengths)}-{max(lengths)} tokens, "
          f"median {int(np.median(lengths))}); student {student.architecture_} of {Path(student.base_model).name}, "
          f"trained {trained_seconds:.1f} s on {len(pairs)} pairs, loss per epoch "
          f"{', '.join(f'{loss:.2f}' for loss in student.loss_history_)}; "
          f"max_output_length {student.max_output_length}, inference_batch_size {student.inference_batch_size}, "
          f"torch threads {settings.torch_threads}; fastest of {args.repeats} run(s) each")
    print("| writer | seconds | inputs/s |\n|---|---|---|")
    print(f"| model.generate, one input at a time | {single_seconds:.2f} | {len(pool) / single_seconds:.1f} |")
    print(f"| TextToTextStudent.generate (batched, length-sorted) | {batched_seconds:.2f} | "
          f"{len(pool) / batched_seconds:.1f} |")
    written = [len(student.tokenizer_(text, add_special_tokens=False)["input_ids"]) for text in batched]
    print(f"speed-up: {single_seconds / batched_seconds:.1f}x (target >= 4x); same output: {100 * same:.1f} %; "
          f"output tokens: median {int(np.median(written))}, max {max(written)}; e.g. {batched[0]!r}")


if __name__ == "__main__":
    main()
