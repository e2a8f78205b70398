from pathlib import Path

import pytest

from alvar.datafiles import DataFileError, read_dataset, read_labeled

LABELS = {"self-harm", "medical-advice", "legal-advice", "financial-advice", "emergency-situation", "discard"}


@pytest.mark.parametrize("name, rows", [
    ("bootstrap_labeled.tsv", 150), ("dev_labeled.tsv", 150), ("test_labeled.tsv", 2700),
    ("random-all.tsv", 600), ("topn-all.tsv", 600), ("coreset-all.tsv", 600), ("cluster-all.tsv", 600),
])
def test_every_released_split_loads_as_it_is(safety_dir: Path, name: str, rows: int) -> None:
    data = read_dataset(safety_dir / name)
    assert abs(len(data) - rows) <= 1
    assert set(data.labels) <= LABELS
    assert all(text == text.strip() and text for text in data.texts)


def test_dirt_is_repaired_and_reported(safety_dir: Path) -> None:
    random_split = read_dataset(safety_dir / "random-all.tsv")
    assert random_split.text_column.startswith("Please provide")
    assert any("second column" in note for note in random_split.notes)
    assert random_split.texts[0] == "Top-rated air purifiers?"

    coreset = read_dataset(safety_dir / "coreset-all.tsv")
    assert any("empty text" in note and "227" in note for note in coreset.notes)


def test_labels_with_trailing_spaces_are_stripped(tmp_path: Path) -> None:
    path = tmp_path / "split.tsv"
    path.write_text("id\tinput\tsubreddit\tcategory\r\n1\tAm I liable?\tlegaladvice\tlegal-advice \r\n"
                    "2\tFlood coming\tpreppers\temergency-situation \r\n")
    data = read_dataset(path)
    assert data.labels == ["legal-advice", "emergency-situation"]
    assert any("stripped" in note and "2 label" in note for note in data.notes)


def test_quotes_inside_tsv_fields_are_kept(safety_dir: Path) -> None:
    texts = read_dataset(safety_dir / "cluster-all.tsv").texts
    assert '"Why don\'t you just go away?"' in texts


def test_csv_jsonl_and_overrides(tmp_path: Path) -> None:
    csv_file = tmp_path / "pool.csv"
    csv_file.write_text('id,body,tag\n1,"Hello, world", a \n2,Second,b\n')
    data = read_dataset(csv_file, text_col="body", label_col="tag")
    assert data.texts == ["Hello, world", "Second"] and data.labels == ["a", "b"]
    assert [example.id for example in data.examples] == ["1", "2"]

    jsonl = tmp_path / "pool.jsonl"
    jsonl.write_text('{"text": "one", "label": "x"}\n\n{"text": "two", "label": "y"}\n')
    data = read_dataset(jsonl)
    assert data.texts == ["one", "two"] and data.labels == ["x", "y"]
    assert [example.id for example in data.examples] == ["0", "1"]


def test_unlabeled_file_has_no_labels(tmp_path: Path) -> None:
    pool = tmp_path / "pool.tsv"
    pool.write_text("text\nfirst\nsecond\n")
    data = read_dataset(pool)
    assert data.label_column is None and data.examples[1].label is None
    with pytest.raises(DataFileError, match="no label column"):
        read_labeled([pool])


@pytest.mark.parametrize("name, content, message", [
    ("bad.tsv", "id\ttext\tlabel\n1\tfine\ta\n2\ttoo\tmany\tfields\n", r"bad\.tsv:3: expected 3 fields"),
    ("bad.jsonl", '{"text": "ok", "label": "a"}\n{"text": broken}\n', r"bad\.jsonl:2: not valid JSON"),
    ("bad.jsonl", '{"text": "ok", "label": "a"}\n[1, 2]\n', r"bad\.jsonl:2: expected a JSON object"),
    ("nolabel.tsv", "text\tlabel\nfine\t\n", r"nolabel\.tsv:2: empty label"),
    ("notext.csv", "a,b\n1,2\n", r"notext\.csv: no text column"),
    ("empty.tsv", "", r"empty\.tsv: the file is empty"),
    ("header.tsv", "text\tlabel\n", r"header\.tsv: no rows"),
    ("data.xlsx", "x", r"unknown file type"),
])
def test_bad_files_name_file_and_line(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataFileError, match=message):
        read_labeled([path])


def test_missing_file_and_unknown_column(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="no such file"):
        read_dataset(tmp_path / "absent.tsv")
    path = tmp_path / "pool.tsv"
    path.write_text("text\tlabel\nx\ty\n")
    with pytest.raises(DataFileError, match="no text column 'body'"):
        read_dataset(path, text_col="body")
