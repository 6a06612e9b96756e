"""`WordPieceGraph`: keras-hub's WordPiece preprocessing rebuilt from core TensorFlow ops
gives the very token ids, masks and segments, on mixed scripts, accents, punctuation, CJK,
unknown words and truncation, for each lowercase / strip-accents setting."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

keras_hub = pytest.importorskip("keras_hub")

from tfft.modalities.text.serving import WordPieceGraph, unsupported  # noqa: E402

TEXTS = [
    "Refund my order #1234 please!!", "", "   ", "unbelievable, unbelievably believable",
    "Héllo wörld, naïve café! Ünïcödé ÀÉÎÕÜ résumé", "ＡＢＣ ﬁne Straße İstanbul ΣΊΣΥΦΟΣ",
    "東京は日本の首都です。", "tab\there\nnewline\u00a0nbsp zero\u200bwidth\x07bell",
    "emoji 😀 test 🚀🚀", "don't stop-believing (really) [CLS] [SEP] $5^2 `x`",
    "a" * 150, "x " * 60, "Ελληνικά кириллица עברית العربية हिन्दी", "HELLO Hello hello",
    "한국어 텍스트 입니다", "বাংলা ভাষা কোথায় বৌ", "漢󠄀字 flag󠁧", "ｶﾀｶﾅ ＡＢＣ",
]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def vocabulary():
    """Whole words, subwords and single characters (plain and `##`), like a real WordPiece
    vocabulary, so greedy matching has choices to make."""
    words = ["refund", "my", "order", "please", "un", "##believ", "##able", "##ably", "believ", "hello", "world",
             "cafe", "caf", "##e", "naive", "resume", "istanbul", "stop", "really", "x", "##x", "test"]
    characters = sorted(set("".join(TEXTS).lower() + "".join(TEXTS)) - set(" \t\n"))
    pieces = [c for c in characters if not c.isspace()] + ["##" + c for c in characters if not c.isspace()]
    return SPECIALS + list(dict.fromkeys(words + pieces))


@pytest.mark.parametrize("lowercase,strip_accents", [(True, True), (True, False), (False, True), (False, False)])
def test_token_ids_match_keras_hub(lowercase, strip_accents):
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary(), lowercase=lowercase)
    tokenizer.strip_accents = strip_accents
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer=tokenizer, sequence_length=24)
    expected = preprocessor(tf.constant(TEXTS))
    got = WordPieceGraph(preprocessor)(tf.constant(TEXTS))
    assert sorted(got) == sorted(expected) == ["padding_mask", "segment_ids", "token_ids"]
    for key in expected:
        assert got[key].dtype == expected[key].dtype
        np.testing.assert_array_equal(got[key].numpy(), expected[key].numpy(), err_msg=key)
    unknown = tokenizer.token_to_id("[UNK]")
    assert (expected["token_ids"].numpy() == unknown).any()  # unknown words are exercised


@pytest.mark.parametrize("texts", [[], [""], ["", "   ", "\u200b"], ["ภาษาไทยไม่มีช่องว่างระหว่างคำเลยครับผมคิดว่านะครับ"]],
                         ids=["no texts", "empty", "no words", "one word too long"])
def test_batches_without_a_word_to_split_in_a_graph(texts):
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary(), lowercase=True)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer=tokenizer, sequence_length=8)
    graph = WordPieceGraph(preprocessor)
    served = tf.function(graph.__call__, input_signature=[tf.TensorSpec([None], tf.string)])
    got = served(tf.constant(texts, tf.string))
    assert got["token_ids"].shape == (len(texts), 8)
    if texts:
        np.testing.assert_array_equal(got["token_ids"].numpy(), preprocessor(tf.constant(texts))["token_ids"].numpy())


def test_distilbert_has_no_segment_ids():
    tokenizer = keras_hub.models.DistilBertTokenizer(vocabulary=vocabulary())
    preprocessor = keras_hub.models.DistilBertTextClassifierPreprocessor(tokenizer=tokenizer, sequence_length=16)
    got = WordPieceGraph(preprocessor)(tf.constant(TEXTS[:4]))
    assert sorted(got) == ["padding_mask", "token_ids"]
    np.testing.assert_array_equal(got["token_ids"].numpy(), preprocessor(tf.constant(TEXTS[:4]))["token_ids"].numpy())


def test_a_byte_pair_tokenizer_is_named_as_unsupported():
    vocabulary = {"<s>": 0, "<pad>": 1, "</s>": 2, "<mask>": 3, "a": 4, "b": 5, "ab": 6}
    tokenizer = keras_hub.models.RobertaTokenizer(vocabulary=vocabulary, merges=["a b"])
    preprocessor = keras_hub.models.RobertaTextClassifierPreprocessor(tokenizer=tokenizer, sequence_length=8)
    assert unsupported(preprocessor) == "its tokenizer is a RobertaTokenizer, not WordPiece"
    with pytest.raises(ValueError, match="not WordPiece"):
        WordPieceGraph(preprocessor)


LOAD = """
import sys
import tensorflow as tf
module = tf.saved_model.load(sys.argv[1])
ids = module.tokenize(tf.constant(["unbelievably caf\\u00e9 \\u6771!"]))["token_ids"].numpy()
print(" ".join(map(str, ids[0])))
print(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow_text", "keras_hub", "tfft")))
"""


def test_a_saved_model_of_it_loads_and_runs_with_tensorflow_alone(tmp_path):
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary(), lowercase=True)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer=tokenizer, sequence_length=12)
    module = tf.Module()
    module.graph = WordPieceGraph(preprocessor)
    module.tokenize = tf.function(module.graph.__call__, input_signature=[tf.TensorSpec([None], tf.string)])
    tf.saved_model.save(module, str(tmp_path / "tokenizer"))
    out = subprocess.run([sys.executable, "-c", LOAD, str(tmp_path / "tokenizer")], capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert out.returncode == 0, out.stderr[-2000:]
    ids, imported = out.stdout.strip().splitlines()[-2:]
    expected = preprocessor(tf.constant(["unbelievably caf\u00e9 \u6771!"]))["token_ids"].numpy()[0]
    assert ids == " ".join(map(str, expected))
    assert imported == "[]"
