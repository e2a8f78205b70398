"""Public data sets to measure selection strategies beyond the safety data: labelled text-classification sets with
skewed classes, and (input, output) pair sets with a subgroup per pair for generative projects. Each is pinned to
one upstream commit, every file checked by SHA-256 (:mod:`alvar.pinned_files`), with its licence, its citation and
a converter to alvar's rows ((text, label) or (input, output, group)).

Nothing here is shipped with alvar: the files are downloaded on the user's machine the first time (or read from
``ALVAR_DATASETS/<name>/``), as the demo's are.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from alvar.pinned_files import PinnedFileError, PinnedFiles
from alvar.settings import Settings

# (text, label)
LabeledRow = tuple[str, str]
# (input, output, group)
PairRow = tuple[str, str, str]
RowT = TypeVar("RowT", LabeledRow, PairRow)


class PublicDataError(PinnedFileError):
    """A public data set that is unknown, unreachable or not the released files; the message says which."""


@dataclass(frozen=True)
class PublicDataset(Generic[RowT]):
    """One registered data set: where its files are (pinned), what it is, the kind of project it serves
    (``task``: classification or generation) and how its rows become alvar's (:data:`LabeledRow` or
    :data:`PairRow`)."""

    name: str
    description: str
    files: PinnedFiles
    source: str
    licence: str
    citation: str
    cleaning: str
    task: str
    # Rows per label (classification) or pairs per subgroup (generation), measured once on the pinned files
    # (`alvar datasets list` shows them without a download).
    counts: Mapping[str, int]
    convert: Callable[[Mapping[str, Path]], list[RowT]]

    @property
    def size(self) -> int:
        return sum(self.counts.values())

    def shares(self) -> dict[str, float]:
        """Each class's (or subgroup's) share of the rows, largest first."""
        ordered = sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))
        return {label: count / self.size for label, count in ordered}


def one_line(text: str) -> str:
    """Whitespace (newlines and tabs included) collapsed to single spaces: a row of an unquoted TSV."""
    return " ".join(text.split())


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


# Davidson et al.'s own preprocessing (classifier/classifier.py, `preprocess`): URLs and mentions become
# placeholders, whitespace is collapsed. Nothing else is removed (RT, hashtags and HTML entities stay).
_URL = re.compile(r"http[s]?://(?:[a-zA-Z]|[0-9]|[$-_@.&+]|[!*\(\),]|(?:%[0-9a-fA-F][0-9a-fA-F]))+")
_MENTION = re.compile(r"@[\w\-]+")
DAVIDSON_LABELS = {"0": "hate", "1": "offensive", "2": "neither"}


def davidson_tweet(text: str) -> str:
    return _MENTION.sub("MENTIONHERE", _URL.sub("URLHERE", one_line(text))).strip()


def _convert_davidson(paths: Mapping[str, Path]) -> list[LabeledRow]:
    return [(davidson_tweet(row["tweet"]), DAVIDSON_LABELS[row["class"]])
            for row in _csv_rows(paths["labeled_data.csv"])]


DAVIDSON = PublicDataset(
    name="davidson-2017",
    description="24,783 tweets labelled hate speech, offensive or neither by the majority of CrowdFlower coders",
    files=PinnedFiles(
        "davidson-2017",
        "https://raw.githubusercontent.com/t-davidson/hate-speech-and-offensive-language/"
        "cb50f7e9eb855a99abc51423bf40df0e26d6fe30/data",
        {"labeled_data.csv": "fcb8bc7c68120ae4af04a5b9acd58585513ede11e1548ebf36a5c2040b6f6281"},
    ),
    source="github.com/t-davidson/hate-speech-and-offensive-language @ cb50f7e: data/labeled_data.csv",
    licence="MIT",
    citation="Davidson, Warmsley, Macy and Weber. Automated Hate Speech Detection and the Problem of Offensive "
             "Language. ICWSM 2017.",
    cleaning="the paper's own: URLs -> URLHERE, @mentions -> MENTIONHERE, whitespace collapsed",
    task="classification",
    counts={"offensive": 19190, "neither": 4163, "hate": 1430},
    convert=_convert_davidson,
)

MELD_FILES = ("train_sent_emo.csv", "dev_sent_emo.csv", "test_sent_emo.csv")


def _convert_meld(paths: Mapping[str, Path]) -> list[LabeledRow]:
    return [(one_line(row["Utterance"]), row["Emotion"]) for name in MELD_FILES for row in _csv_rows(paths[name])]


MELD = PublicDataset(
    name="meld",
    description="13,708 utterances of the TV series Friends, each labelled with one of 7 emotions (text only)",
    files=PinnedFiles(
        "meld",
        "https://raw.githubusercontent.com/declare-lab/MELD/2d2011b409d3ca2d7e94460cd007d434b1d0a102/data/MELD",
        {
            "train_sent_emo.csv": "d2fa2d6529cf03cac2989efec05c9b27d8fd2f4c8fc5974c7ae88aa537fa02db",
            "dev_sent_emo.csv": "2e89c6f8aa182d6f62f8c6331aece905ac7273ca4999660bfb5213e1d0370c1c",
            "test_sent_emo.csv": "8d37103938f7067600839fe29d5a114a6cd1bcdafb75bec101e06464c5006888",
        },
    ),
    source="github.com/declare-lab/MELD @ 2d2011b: data/MELD/{train,dev,test}_sent_emo.csv",
    licence="GPL-3.0",
    citation="Poria, Hazarika, Majumder, Naik, Cambria and Mihalcea. MELD: A Multimodal Multi-Party Dataset for "
             "Emotion Recognition in Conversation. ACL 2019.",
    cleaning="whitespace collapsed; the three released splits joined",
    task="classification",
    counts={"neutral": 6436, "joy": 2308, "surprise": 1636, "anger": 1607, "sadness": 1002, "disgust": 361,
                  "fear": 358},
    convert=_convert_meld,
)

CONAN_FILE = "Multitarget-CONAN.csv"


def _convert_conan(paths: Mapping[str, Path]) -> list[PairRow]:
    return [(one_line(row["HATE_SPEECH"]), one_line(row["COUNTER_NARRATIVE"]), row["TARGET"].strip())
            for row in _csv_rows(paths[CONAN_FILE])]


MULTITARGET_CONAN = PublicDataset(
    name="multitarget-conan",
    description="5,003 hate-speech / counter-narrative pairs written by NGO operators with an LLM in the loop, each "
                "with its target group",
    files=PinnedFiles(
        "multitarget-conan",
        "https://raw.githubusercontent.com/marcoguerini/CONAN/627faf12d73ee75291d0c99a1dffd54c811a93cb/"
        "Multitarget-CONAN",
        {CONAN_FILE: "1ab624c9e74ac4ef4f4913991802f7305b4a0bad21b8693e4d61ce22c874da26"},
    ),
    source="github.com/marcoguerini/CONAN @ 627faf1: Multitarget-CONAN/Multitarget-CONAN.csv",
    licence="research use only, no redistribution (downloaded on your machine, never shipped)",
    citation="Fanton, Bonaldi, Tekiroğlu and Guerini. Human-in-the-Loop for Data Collection: a Multi-Target Counter "
             "Narrative Dataset to Fight Online Hate Speech. ACL 2021.",
    cleaning="whitespace collapsed; HATE_SPEECH -> input, COUNTER_NARRATIVE -> output, TARGET -> group",
    task="generation",
    counts={"MUSLIMS": 1335, "MIGRANTS": 957, "WOMEN": 662, "LGBT+": 617, "JEWS": 594, "POC": 352,
                  "other": 266, "DISABLED": 220},
    convert=_convert_conan,
)

REGISTRY: dict[str, PublicDataset[Any]] = {dataset.name: dataset for dataset in (DAVIDSON, MELD, MULTITARGET_CONAN)}


def public_dataset(name: str) -> PublicDataset[Any]:
    """The registered data set of that name (either task); an unknown name is an error that lists the known ones."""
    if name not in REGISTRY:
        raise PublicDataError(f"no public data set {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def load(dataset: PublicDataset[RowT], settings: Settings) -> list[RowT]:
    """The data set's rows, from its checked files (ALVAR_DATASETS or the download cache)."""
    return dataset.convert(dataset.files.paths(settings, PublicDataError))
