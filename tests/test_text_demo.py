import csv
import hashlib
import os
import re
import string
import subprocess
import sys

import numpy as np
import pytest

from tfft.modalities.text import demo as synthetic_text
from tfft.modalities.text.demo import (
    SUPPORT_TICKET_CLASSES,
    make_support_tickets,
    support_ticket_splits,
)
from tfft.modalities.text.paraphrases import split_pool
from tfft.modalities.text.pipeline import text_datasets
from tfft.errors import DataError


def _read(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _words(text):
    return re.findall(r"[a-z']+", text.lower())


def _bag_of_words_centroids(train_texts, train_labels, test_texts, test_labels):
    """Accuracy of nearest class centroid over binary, L2-normalised word counts."""
    vocab = {w: i for i, w in enumerate(sorted({w for t in train_texts for w in _words(t)}))}

    def vectors(texts):
        m = np.zeros((len(texts), len(vocab)))
        for row, text in enumerate(texts):
            for word in _words(text):
                if word in vocab:
                    m[row, vocab[word]] = 1.0
        return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-9)

    x = vectors(train_texts)
    centroids = np.stack([x[train_labels == c].mean(0) for c in range(6)])
    predicted = np.argmax(vectors(test_texts) @ centroids.T, axis=1)
    return float(np.mean(predicted == test_labels))


def _static_prefix(template):
    """The text of a phrase template before its first slot, lower-cased."""
    return template.split("{")[0].strip().lower()


def test_splits_are_deterministic_balanced_and_filled():
    first = support_ticket_splits(5, 7, seed=0)
    again = support_ticket_splits(5, 7, seed=0)
    other = support_ticket_splits(5, 7, seed=1)
    train_texts, train_labels, test_texts, test_labels, names = first

    assert names == list(SUPPORT_TICKET_CLASSES) and len(names) >= 6
    assert first[0] == again[0] and first[2] == again[2]
    np.testing.assert_array_equal(first[1], again[1])
    assert other[0] != train_texts
    assert np.bincount(train_labels).tolist() == [5] * 6
    assert np.bincount(test_labels).tolist() == [7] * 6
    assert train_labels.dtype == np.int32
    # Shuffled, not grouped by class.
    assert train_labels.tolist() != sorted(train_labels.tolist())
    for text in train_texts + test_texts:
        assert text.strip() and "{" not in text and "}" not in text
        assert 5 <= len(text.split()) <= 150


@pytest.mark.slow
def test_tickets_do_not_depend_on_the_hash_seed():
    # Iterating a set of slot names would tie the draws to PYTHONHASHSEED.
    code = (
        "import hashlib; from tfft.modalities.text.demo import support_ticket_splits; "
        "print(hashlib.sha1(repr(support_ticket_splits(3, 3, 0)[::2]).encode()).hexdigest())"
    )
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONHASHSEED": seed, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        for seed in ("1", "2")
    ]
    digests = {run.communicate(timeout=120)[0].strip().splitlines()[-1] for run in runs}
    assert [run.returncode for run in runs] == [0, 0]
    here = hashlib.sha1(repr(support_ticket_splits(3, 3, 0)[::2]).encode()).hexdigest()
    assert digests == {here}


def test_a_ticket_does_not_depend_on_how_many_are_drawn():
    few = support_ticket_splits(4, 1, seed=3)[0]
    many = support_ticket_splits(9, 1, seed=3)[0]
    assert set(few) <= set(many)


def test_test_split_uses_phrases_that_training_never_does():
    train_texts, _, test_texts, _, _ = support_ticket_splits(200, 200, seed=0)
    train_blob = "\n".join(train_texts).lower()
    test_blob = "\n".join(test_texts).lower()

    for label in SUPPORT_TICKET_CLASSES:
        test_only, shared = [], []
        for family in synthetic_text._CORE[label]:
            train_side = set(split_pool(family, "train"))
            for phrase in split_pool(family, "test"):
                (shared if phrase in train_side else test_only).append(phrase)
        prefixes = [_static_prefix(p) for p in test_only]
        prefixes = [p for p in prefixes if len(p) >= 15]
        assert len(prefixes) >= 8, label
        # Test-only phrasings never occur in training tickets, but do in test tickets.
        assert not [p for p in prefixes if p in train_blob], label
        assert sum(p in test_blob for p in prefixes) >= len(prefixes) - 2, label
        # Shared phrasings occur on both sides.
        shared_prefixes = [_static_prefix(p) for p in shared if len(_static_prefix(p)) >= 15]
        assert shared_prefixes
        assert all(p in train_blob and p in test_blob for p in shared_prefixes), label

    # A concrete pair of synonyms: "charged twice" trains, "debited two times" tests.
    assert "charged twice" in train_blob and "charged twice" not in test_blob
    assert "debited two times" in test_blob and "debited two times" not in train_blob


def test_bag_of_words_is_well_above_chance_and_well_below_perfect():
    train_texts, train_labels, test_texts, test_labels, _ = support_ticket_splits(
        16, 100, seed=0
    )
    accuracy = _bag_of_words_centroids(train_texts, train_labels, test_texts, test_labels)
    assert 0.4 < accuracy < 0.85, accuracy

    # The same classifier does much better on tickets from the training pools: the
    # difficulty comes from the unseen phrasings, not from noise.
    texts, labels, _, _, _ = support_ticket_splits(66, 1, seed=0)
    labels = np.asarray(labels)
    train_idx = np.concatenate([np.flatnonzero(labels == c)[:16] for c in range(6)])
    test_idx = np.setdiff1d(np.arange(len(texts)), train_idx)
    same_pool = _bag_of_words_centroids(
        [texts[i] for i in train_idx], labels[train_idx],
        [texts[i] for i in test_idx], labels[test_idx],
    )
    assert same_pool > accuracy + 0.1, (same_pool, accuracy)


def test_make_support_tickets_writes_both_csvs(tmp_path):
    folder = make_support_tickets(tmp_path / "tickets", per_class=4, seed=0, test_per_class=3)

    assert folder == str(tmp_path / "tickets")
    assert sorted(os.listdir(folder)) == [".complete", "tickets.csv", "tickets_test.csv"]
    train = _read(os.path.join(folder, "tickets.csv"))
    test = _read(os.path.join(folder, "tickets_test.csv"))
    assert list(train[0]) == ["text", "label"]
    assert len(train) == 24 and len(test) == 18
    texts, labels, test_texts, _, names = support_ticket_splits(4, 3, seed=0)
    assert [row["text"] for row in train] == texts
    assert [row["label"] for row in train] == [names[i] for i in labels]
    assert [row["text"] for row in test] == test_texts

    data = text_datasets(
        csv=os.path.join(folder, "tickets.csv"),
        validation_path=os.path.join(folder, "tickets_test.csv"),
    )
    assert data.class_names == list(SUPPORT_TICKET_CLASSES)
    assert (data.num_train, data.num_validation) == (24, 18)


def test_second_call_with_same_parameters_does_not_rewrite(tmp_path):
    folder = make_support_tickets(tmp_path / "t", per_class=3, test_per_class=2)
    paths = [os.path.join(folder, name) for name in ("tickets.csv", "tickets_test.csv")]
    before = [os.stat(p).st_mtime_ns for p in paths]

    assert make_support_tickets(tmp_path / "t", per_class=3, test_per_class=2) == folder
    assert [os.stat(p).st_mtime_ns for p in paths] == before

    # Other parameters rewrite the files, leaving no temporary file behind.
    make_support_tickets(tmp_path / "t", per_class=2, test_per_class=2, seed=5)
    assert len(_read(paths[0])) == 12
    assert sorted(os.listdir(folder)) == [".complete", "tickets.csv", "tickets_test.csv"]


def test_default_directory_and_bad_arguments(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic_text.tempfile, "tempdir", str(tmp_path))
    folder = make_support_tickets(per_class=1, test_per_class=1)
    assert folder == os.path.join(str(tmp_path), "tfft-support-tickets")

    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="is a file"):
        make_support_tickets(tmp_path / "file")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "tickets.csv").write_text("text,label\nmy own,data\n")
    with pytest.raises(DataError, match="already holds tickets.csv"):
        make_support_tickets(tmp_path / "mine")
    assert (tmp_path / "mine" / "tickets.csv").read_text() == "text,label\nmy own,data\n"
    with pytest.raises(DataError, match="per_class=0"):
        make_support_tickets(tmp_path / "t", per_class=0)
    with pytest.raises(DataError, match="seed=-1"):
        support_ticket_splits(seed=-1)


def test_phrase_pools_are_filled_from_known_slots():
    slots = set(synthetic_text._SLOTS)
    pools = [p for fams in synthetic_text._CORE.values() for fam in fams for p in fam]
    pools += [p for ps in synthetic_text._DETAIL.values() for p in ps]
    pools += synthetic_text._CONTEXT
    for template in pools:
        fields = {n for _, n, _, _ in string.Formatter().parse(template) if n}
        assert fields <= slots, template
    for label in SUPPORT_TICKET_CLASSES:
        assert len(synthetic_text._CORE[label]) >= 5
        assert all(len(family) == 5 for family in synthetic_text._CORE[label])
