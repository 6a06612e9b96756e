"""The built-in contract sentences: tagged entities, splits phrased differently, words as a
WordPiece tokenizer splits the text, CoNLL files written once."""

import os

import pytest
import tensorflow as tf

from tfft.modalities.text.contract_entities import (ENTITY_TYPES, TEST_FILE, TRAIN_FILE, contract_entity_splits,
                                                    make_contract_entities, words_of)
from tfft.modalities.text.entities import spans
from tfft.modalities.text.token_sources import read_conll


def skeleton(words, tags):
    """The sentence with each entity replaced by its type: what the template says."""
    out, found = list(words), spans(tags)
    for kind, start, end in reversed(found):
        out[start:end] = [f"<{kind}>"]
    return " ".join(out).lower()


def test_splits_are_seeded_tagged_and_phrased_differently():
    train, test = contract_entity_splits(per_type=30, test_sentences=120, seed=1)
    assert (train, test) == contract_entity_splits(per_type=30, test_sentences=120, seed=1)
    assert contract_entity_splits(per_type=30, test_sentences=120, seed=2)[0] != train
    assert (len(train), len(test)) == (120, 120)
    for words, tags in train + test:
        assert len(words) == len(tags) and all(t == "O" or t[2:] in ENTITY_TYPES for t in tags)
    for kind in ENTITY_TYPES:
        assert sum(any(k == kind for k, _, _ in spans(tags)) for _, tags in train) >= 0.7 * 30, kind
    assert any(set(tags) == {"O"} for _, tags in train)  # sentences without entities too
    train_templates = {skeleton(*s) for s in train}
    test_templates = {skeleton(*s) for s in test}
    assert len(test_templates - train_templates) >= 5 and test_templates & train_templates
    names = {name: {" ".join(w[a:b]) for w, t in split for _, a, b in spans(t)}
             for name, split in (("train", train), ("test", test))}
    unseen = names["test"] - names["train"]
    assert len(unseen) > 0.5 * len(names["test"])  # most test entities never occur in training


def test_entities_by_hand_on_one_sentence():
    train, _ = contract_entity_splits(per_type=30, test_sentences=1, seed=0)
    words, tags = next((w, t) for w, t in train if " shall pay to " in " ".join(w))
    # "{P} shall pay to {P} the sum of {A} no later than {D}."
    found = [(kind, " ".join(words[a:b])) for kind, a, b in spans(tags)]
    assert [kind for kind, _ in found] == ["PARTY", "PARTY", "AMOUNT", "DATE"]
    assert words[words.index("sum") + 2] == found[2][1].split()[0]
    assert tags[-1] == "O" and words[-1] == "."


def test_words_are_the_words_a_wordpiece_tokenizer_splits():
    keras_hub = pytest.importorskip("keras_hub")
    from tfft.modalities.text.alignment import WordAligner

    train, test = contract_entity_splits(per_type=8, test_sentences=32)
    texts = [" ".join(words) for words, _ in train + test]
    characters = sorted({c for text in texts for c in text.lower()} - {" "})
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + characters + ["##" + c for c in characters]
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer=keras_hub.models.BertTokenizer(vocabulary=vocabulary), sequence_length=8)
    out = WordAligner(preprocessor)(tf.constant(texts))
    for row, ((words, _), text) in enumerate(zip(train + test, texts)):
        found = [text[s:e] for s, e in zip(out["start"][row].numpy(), out["end"][row].numpy()) if s >= 0]
        assert found == words
    assert [w for w, _, _ in words_of("Dr. O'Neil pays €5,000.")] == ["Dr", ".", "O", "'", "Neil", "pays", "€5", ",",
                                                                      "000", "."]


def test_files_are_conll_and_written_once(tmp_path):
    folder = make_contract_entities(str(tmp_path / "set"), per_type=3, test_sentences=5)
    assert sorted(os.listdir(folder)) == [".complete", TEST_FILE, TRAIN_FILE]
    train, test = contract_entity_splits(per_type=3, test_sentences=5)
    assert [(s.words, s.tags) for s in read_conll(os.path.join(folder, TRAIN_FILE))] == train
    assert [(s.words, s.tags) for s in read_conll(os.path.join(folder, TEST_FILE))] == test
    stamp = os.path.getmtime(os.path.join(folder, TRAIN_FILE))
    assert make_contract_entities(folder, per_type=3, test_sentences=5) == folder
    assert os.path.getmtime(os.path.join(folder, TRAIN_FILE)) == stamp
