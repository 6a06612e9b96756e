"""`WordAligner`: keras-hub's WordPiece ids, and where every word is in the text and in the
sequence; `align_tags`: a tag on each word's first piece, -1 everywhere else."""

import numpy as np
import pytest
import tensorflow as tf

keras_hub = pytest.importorskip("keras_hub")

from tfft.errors import DataError  # noqa: E402
from tfft.modalities.text.alignment import WordAligner, align_tags  # noqa: E402
from tfft.modalities.text.token_sources import Sentence  # noqa: E402

TEXTS = [
    "Acme Ltd. shall pay €25,000.00 to O'Neil by 12 March 2024.", "", "   ",
    "Héllo  wörld,\tnaïve café! ÀÉÎ résumé", "東京は日本の首都です。", "tab\there\nnewline zero\u200bwidth\x07bell",
    "emoji 😀 test 🚀🚀", "unbelievable, unbelievably believable", "a" * 150, "x " * 60,
]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def preprocessor(lowercase=True, strip_accents=None, sequence_length=24):
    words = ["acme", "ltd", "shall", "pay", "to", "by", "march", "un", "##believ", "##able", "##ably", "believ",
             "hello", "world", "cafe", "caf", "##e", "naive", "test", "x"]
    characters = sorted(set("".join(TEXTS).lower() + "".join(TEXTS)) - set(" \t\n"))
    vocabulary = SPECIALS + list(dict.fromkeys(words + characters + ["##" + c for c in characters]))
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=lowercase)
    if strip_accents is not None:
        tokenizer.strip_accents = strip_accents
    return keras_hub.models.BertTextClassifierPreprocessor(tokenizer=tokenizer, sequence_length=sequence_length)


@pytest.mark.parametrize("lowercase,strip_accents", [(True, True), (False, False)])
def test_ids_are_keras_hubs_and_each_position_holds_its_words_first_piece(lowercase, strip_accents):
    prep = preprocessor(lowercase, strip_accents)
    out = WordAligner(prep)(tf.constant(TEXTS))
    expected = prep(tf.constant(TEXTS))
    assert sorted(out["inputs"]) == sorted(expected)
    for key in expected:
        np.testing.assert_array_equal(out["inputs"][key].numpy(), expected[key].numpy(), err_msg=key)
    tokenizer = prep.tokenizer
    for row, text in enumerate(TEXTS):
        starts, ends, positions = (out[key][row].numpy() for key in ("start", "end", "position"))
        words = [text[s:e] for s, e in zip(starts, ends) if s >= 0]
        # Each word as the tokenizer splits the text: tokenised alone, its first piece is at its position.
        for word, position in zip(words, positions):
            pieces = _pieces(tokenizer, word)
            assert len(pieces) >= 1
            if position >= 0:
                assert out["inputs"]["token_ids"][row][position] == pieces[0], (text, word)
        assert sum(len(_pieces(tokenizer, w)) for w in words) == len(_pieces(tokenizer, text))


def _pieces(tokenizer, text):
    out = tokenizer(tf.constant([text]))
    return list(out.to_list()[0] if hasattr(out, "to_list") else out[0])


def test_word_spans_on_raw_text():
    out = WordAligner(preprocessor(sequence_length=64))(tf.constant([TEXTS[0], TEXTS[3], "zero\u200bwidth"]))
    spans = [[TEXTS[0][s:e] for s, e in zip(*(out[k][0].numpy() for k in ("start", "end"))) if s >= 0]]
    assert spans[0] == ["Acme", "Ltd", ".", "shall", "pay", "€25", ",", "000", ".", "00", "to", "O", "'", "Neil",
                        "by", "12", "March", "2024", "."]
    second = [TEXTS[3][s:e] for s, e in zip(out["start"][1].numpy(), out["end"][1].numpy()) if s >= 0]
    assert second == ["Héllo", "wörld", ",", "naïve", "café", "!", "ÀÉÎ", "résumé"]
    # A format character (zero width space) separates words as whitespace does.
    third = out["start"][2].numpy()
    assert list(third[third >= 0]) == [0, 5]


def test_words_past_the_sequence_get_no_position():
    prep = preprocessor(sequence_length=8)  # [CLS], six pieces, [SEP]
    out = WordAligner(prep)(tf.constant(["acme ltd unbelievable shall pay to march"]))
    # acme, ltd, un ##believ ##able (three pieces), shall: six pieces; pay is cut, and after it every word.
    assert out["position"][0].numpy().tolist() == [1, 2, 3, 6, -1, -1, -1]
    # A word whose first piece fits keeps its position even when its other pieces are cut.
    out = WordAligner(prep)(tf.constant(["acme ltd shall pay to unbelievable"]))
    assert out["position"][0].numpy().tolist() == [1, 2, 3, 4, 5, 6]
    assert out["inputs"]["token_ids"][0][-1] == prep.tokenizer.token_to_id("[SEP]")


def test_align_tags_labels_first_pieces_only_and_counts_cut_words():
    aligner = WordAligner(preprocessor(sequence_length=8))
    sentences = [Sentence(["Acme", "unbelievable", "pays"], ["B-P", "I-P", "O"], "a.conll, line 1"),
                 Sentence(["Ltd.", "pay", "to", "March", "to", "acme", "ltd"], ["B-P"] + ["O"] * 6, "a.conll, line 5")]
    inputs, labels, seen = align_tags(aligner, sentences, [[1, 2, 0], [1, 0, 0, 0, 0, 0, 0]])
    assert labels.shape == inputs["token_ids"].shape == (2, 8)
    # [CLS] acme un ##believ ##able pays [SEP] [PAD]
    assert labels[0].tolist() == [-1, 1, 2, -1, -1, 0, -1, -1]
    # [CLS] ltd . pay to march to [SEP]: "Ltd." is one word of the data, its "." is ignored.
    assert labels[1].tolist() == [-1, 1, -1, 0, 0, 0, 0, -1]
    assert seen.tolist() == [3, 5]
    bad = [Sentence(["pay", "\x07"], ["O", "O"], "b.conll, line 9")]
    with pytest.raises(DataError, match=r"b.conll, line 9: the word '\\x07' holds nothing the tokenizer keeps"):
        align_tags(aligner, bad, [[0, 0]])


def test_in_a_graph_with_no_text_or_no_word():
    aligner = WordAligner(preprocessor(sequence_length=8))
    served = tf.function(aligner.__call__, input_signature=[tf.TensorSpec([None], tf.string)])
    assert served(tf.constant([], tf.string))["position"].shape[0] == 0
    out = served(tf.constant(["", "  \t"]))
    assert out["position"].numpy().size == 0 and out["inputs"]["token_ids"].shape == (2, 8)
