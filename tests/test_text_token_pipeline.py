"""Tagged sentences from CoNLL and JSON-lines files, their checks, splits and alignment to
word pieces (`token_sources`, `token_pipeline`)."""

import json

import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub")

from tfft.errors import DataError  # noqa: E402
from tfft.modalities.text.token_pipeline import token_datasets  # noqa: E402
from tfft.modalities.text.token_sources import read_conll, read_tagged_jsonl  # noqa: E402

CONLL_2003 = """-DOCSTART- -X- -X- O

EU NNP B-NP I-ORG
rejects VBZ B-VP O
German JJ B-NP I-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
"""


def test_conll_reads_the_last_column_and_skips_docstart(tmp_path):
    path = tmp_path / "eng.train"
    path.write_text(CONLL_2003)
    sentences = read_conll(str(path))
    assert [s.words for s in sentences] == [["EU", "rejects", "German", "call", "."], ["Peter", "Blackburn"]]
    assert sentences[0].tags == ["I-ORG", "O", "I-MISC", "O", "O"]
    assert sentences[1].where == f"{path}, line 9"


@pytest.mark.parametrize("text, message", [
    ("Acme B-PARTY\npays\n", "line 2: a line holds a word and its tag, separated by whitespace"),
    ("Acme B-PARTY\npays E-PARTY\n", "line 2: 'E-PARTY' is not an IOB2 tag"),
    ("\n\n-DOCSTART- O\n", "holds no tagged words"),
    (b"Acme B-PARTY\nZ\xfcrich O\n", "line 2: byte 0xfc at offset 14 is not valid UTF-8"),
])
def test_conll_errors_name_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad.conll"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(DataError, match=message) as error:
        read_conll(str(path))
    assert str(path) in str(error.value)


def test_jsonl_reads_words_and_tags_under_the_given_keys(tmp_path):
    path = tmp_path / "tagged.jsonl"
    path.write_text(json.dumps({"words": ["Acme", "pays"], "ner": ["B-PARTY", "O"], "id": 3}) + "\n\n")
    sentences = read_tagged_jsonl(str(path), "words", "ner")
    assert sentences[0].words == ["Acme", "pays"] and sentences[0].where == f"{path}, line 1"


@pytest.mark.parametrize("record, message", [
    ({"tokens": ["Acme"], "tags": ["O", "O"]}, "1 words and 2 tags; every word needs one tag"),
    ({"tokens": ["New York"], "tags": ["B-LOC"]}, "without whitespace"),
    ({"tokens": "Acme pays", "tags": ["O"]}, "must be lists"),
    ({"text": "Acme pays", "label": "x"}, "expected an object with a 'tokens' list and a 'tags' list"),
    ({"tokens": [], "tags": []}, "the sentence has no words"),
    ({"tokens": ["Acme"], "tags": [3]}, "tag 1 is not a string"),
])
def test_jsonl_errors(tmp_path, record, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(DataError, match=message):
        read_tagged_jsonl(str(path))


def preprocessor(sequence_length=16):
    words = ["acme", "ltd", "pays", "eur", "500", "on", "may", "to", "the", "court", "of", "paris", "bob", "smith",
             "un", "##believ", "##able", "sells", "a", "car", "."]
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary)
    return keras_hub.models.BertTextClassifierPreprocessor(tokenizer=tokenizer, sequence_length=sequence_length)


def write_conll(path, sentences):
    path.write_text("\n\n".join("\n".join(f"{w} {t}" for w, t in pairs) for pairs in sentences) + "\n")
    return str(path)


PAY = [("Acme", "B-PARTY"), ("Ltd", "I-PARTY"), ("pays", "O"), ("EUR", "B-AMOUNT"), ("500", "I-AMOUNT"), (".", "O")]
COURT = [("Bob", "I-PARTY"), ("Smith", "I-PARTY"), ("sells", "O"), ("to", "O"), ("the", "O"), ("Court", "B-COURT"),
         ("of", "I-COURT"), ("Paris", "I-COURT")]
PLAIN = [("a", "O"), ("car", "O")]


def test_tags_align_to_first_pieces_and_the_tag_set_comes_from_training(tmp_path):
    train = write_conll(tmp_path / "train.conll", [PAY, COURT, PLAIN])
    validation = write_conll(tmp_path / "dev.conll", [[("unbelievable", "B-PARTY"), ("pays", "O")]])
    data = token_datasets(conll=train, validation_path=validation, preprocess=preprocessor(), batch_size=2)
    assert data.class_names == ["O", "B-AMOUNT", "I-AMOUNT", "B-COURT", "I-COURT", "B-PARTY", "I-PARTY"]
    assert (data.num_train, data.num_validation, data.steps_per_epoch) == (3, 1, 2)
    # The broken start I-PARTY of "Bob" is read as B-PARTY.
    assert data.items["train"][1] == ("Bob Smith sells to the Court of Paris", (5, 6, 0, 0, 0, 3, 4, 4))
    x, y = next(iter(data.validation))
    # [CLS] un ##believ ##able pays [SEP]: the tag on "un", the other pieces ignored.
    assert y.numpy()[0].tolist() == [-1, 5, -1, -1, 0] + [-1] * 11
    assert x["token_ids"].shape == (1, 16) and sorted(x) == ["padding_mask", "segment_ids", "token_ids"]
    ordered = np.concatenate([y.numpy() for _, y in data.in_order()])
    assert ordered[0][:8].tolist() == [-1, 5, 6, 0, 1, 2, 0, -1]
    raw = [text.numpy().decode() for text, _ in data.validation_examples]
    assert raw == ["unbelievable pays"]


def test_split_by_rarest_type_keeps_every_type_on_both_sides(tmp_path):
    sentences = [PAY] * 6 + [COURT] * 4 + [PLAIN] * 5
    data = token_datasets(conll=write_conll(tmp_path / "all.conll", sentences), validation_split=0.25,
                          preprocess=preprocessor(), seed=3)
    for split in ("train", "validation"):
        texts = [text for text, _ in data.items[split]]
        assert any("EUR" in t for t in texts) and any("Court" in t for t in texts) and any(t == "a car" for t in texts)
    assert (data.num_train, data.num_validation) == (11, 4)
    held = token_datasets(conll=write_conll(tmp_path / "all.conll", sentences), validation_split=0.25, holdout=0.3,
                          validation_path=str(tmp_path / "never_read.conll"), preprocess=preprocessor(), seed=3)
    assert held.num_train + held.num_validation == 15


def test_errors_before_anything_is_built(tmp_path):
    train = write_conll(tmp_path / "train.conll", [PAY])
    with pytest.raises(DataError, match=r"dev.conll, line 1: entity type 'COURT' does not occur in the training data; "
                                        r"known types: \['AMOUNT', 'PARTY'\]"):
        token_datasets(conll=train, validation_path=write_conll(tmp_path / "dev.conll", [COURT[4:]]))
    with pytest.raises(DataError, match="tags no entity"):
        token_datasets(conll=write_conll(tmp_path / "plain.conll", [PLAIN, PLAIN]))
    with pytest.raises(DataError, match="reads one source: data.conll"):
        token_datasets(conll=train, jsonl=train)
    with pytest.raises(DataError, match="needs a WordPiece encoder"):
        vocabulary = {"<s>": 0, "<pad>": 1, "</s>": 2, "<mask>": 3, "a": 4, "b": 5, "ab": 6}
        roberta = keras_hub.models.RobertaTextClassifierPreprocessor(
            tokenizer=keras_hub.models.RobertaTokenizer(vocabulary=vocabulary, merges=["a b"]), sequence_length=8)
        token_datasets(conll=train, validation_path=train, preprocess=roberta, encoder="roberta")


def test_words_past_the_sequence_are_counted_aloud(tmp_path, capsys):
    long = PAY + COURT
    data = token_datasets(conll=write_conll(tmp_path / "long.conll", [long, PAY]),
                          validation_path=write_conll(tmp_path / "dev.conll", [long]), preprocess=preprocessor(8))
    said = capsys.readouterr().out
    assert "8 words of 1 training sentences lie past data.sequence_length=8 word pieces; 8 words of 1 validation " \
           "sentences" in said and "count as tagged O" in said
    _, y = next(iter(data.validation))
    assert (y.numpy()[0] >= 0).sum() == 6


def test_without_a_tokenizer_the_sentences_are_listed_raw(tmp_path):
    data = token_datasets(conll=write_conll(tmp_path / "t.conll", [PAY, COURT, PAY, COURT]), validation_split=0.5)
    text, tags = next(iter(data.validation_examples))
    assert text.numpy().decode() in ("Acme Ltd pays EUR 500 .", "Bob Smith sells to the Court of Paris")
    assert tags.numpy().decode().split()[0] == "B-PARTY"
