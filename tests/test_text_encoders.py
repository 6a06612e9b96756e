"""Every BERT-family text encoder keras-hub can save and load offline, through tfft.

Each family gets a tiny random backbone (2 layers, 8 wide, a vocabulary of a few dozen
tokens) and its own tokenizer, saved with its text-classifier preprocessor as a local
keras-hub preset; tfft then loads the preset with `build_text_encoder`.
"""

import io
import os

import keras
import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub")
spm = pytest.importorskip("sentencepiece")

from tfft.backbones import build_backbone  # noqa: E402
from tfft.modalities.text.encoders import build_text_encoder  # noqa: E402
from tfft.freezing import check_groups, layer_groups  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")

SEQUENCE_LENGTH = 8
HIDDEN = 8
CORPUS = ["the quick brown fox", "the fox jumps over the lazy dog", "a dog sleeps", "the earth is round"]
WORDS = sorted({word for line in CORPUS for word in line.split()})
BLOCKS = ["transformer_layer_0", "transformer_layer_1"]
TINY = dict(num_layers=2, hidden_dim=HIDDEN, intermediate_dim=16)


# --- tokenizers ---------------------------------------------------------------------------

def wordpiece(specials):
    return list(specials) + WORDS


def byte_pair():
    """A RoBERTa BPE vocabulary and merges that spell every corpus word, with and without
    the leading-space marker `Ġ`. The `Ġ` merges rank first, so `Ġquick` merges whole."""
    vocabulary, merges = ["<s>", "<pad>", "</s>", "<mask>"], []
    for forms in ([f"Ġ{word}" for word in WORDS], WORDS):
        for form in forms:
            for i, char in enumerate(form):
                for token in (char, form[: i + 1]):
                    if token not in vocabulary:
                        vocabulary.append(token)
                merge = f"{form[:i]} {char}"
                if i and merge not in merges:
                    merges.append(merge)
    return {token: index for index, token in enumerate(vocabulary)}, merges


def sentencepiece(**pieces):
    """A SentencePiece word model of the corpus, with the family's special pieces."""
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=proto, model_type="WORD", vocab_size=len(WORDS) + 5,
        hard_vocab_limit=False, character_coverage=1.0, minloglevel=2, **pieces,
    )
    return proto.getvalue()


BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
ALBERT_PIECES = dict(pad_id=0, unk_id=1, bos_id=2, eos_id=3, pad_piece="<pad>", unk_piece="<unk>", bos_piece="[CLS]",
                     eos_piece="[SEP]", user_defined_symbols="[MASK]")


# --- families -----------------------------------------------------------------------------

def bert():
    vocabulary = wordpiece(BERT_SPECIALS)
    return (keras_hub.models.BertBackbone(vocabulary_size=len(vocabulary), num_heads=2, max_sequence_length=16, **TINY),
            keras_hub.models.BertTokenizer(vocabulary=vocabulary), keras_hub.models.BertTextClassifierPreprocessor)


def distil_bert():
    vocabulary = wordpiece(BERT_SPECIALS)
    return (keras_hub.models.DistilBertBackbone(vocabulary_size=len(vocabulary), num_heads=2, max_sequence_length=16, **TINY),
            keras_hub.models.DistilBertTokenizer(vocabulary=vocabulary), keras_hub.models.DistilBertTextClassifierPreprocessor)


def roberta():
    vocabulary, merges = byte_pair()
    return (keras_hub.models.RobertaBackbone(vocabulary_size=len(vocabulary), num_heads=2, max_sequence_length=16, **TINY),
            keras_hub.models.RobertaTokenizer(vocabulary=vocabulary, merges=merges),
            keras_hub.models.RobertaTextClassifierPreprocessor)


def xlm_roberta():
    # fairseq's layout: <unk>, <s>, </s> first; the tokenizer adds <pad> and <mask> itself.
    tokenizer = keras_hub.models.XLMRobertaTokenizer(proto=sentencepiece(
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>"))
    return (keras_hub.models.XLMRobertaBackbone(vocabulary_size=tokenizer.vocabulary_size(), num_heads=2,
                                                max_sequence_length=16, **TINY),
            tokenizer, keras_hub.models.XLMRobertaTextClassifierPreprocessor)


def electra():
    vocabulary = wordpiece(BERT_SPECIALS)
    return (keras_hub.models.ElectraBackbone(vocab_size=len(vocabulary), num_heads=2, embedding_dim=HIDDEN,
                                             max_sequence_length=16, **TINY),
            keras_hub.models.ElectraTokenizer(vocabulary=vocabulary),
            getattr(keras_hub.models, "ElectraTextClassifierPreprocessor", None))


def albert():
    tokenizer = keras_hub.models.AlbertTokenizer(proto=sentencepiece(**ALBERT_PIECES))
    return (keras_hub.models.AlbertBackbone(vocabulary_size=tokenizer.vocabulary_size(), num_heads=2, embedding_dim=HIDDEN,
                                            max_sequence_length=16, **TINY),
            tokenizer, keras_hub.models.AlbertTextClassifierPreprocessor)


def deberta_v3():
    tokenizer = keras_hub.models.DebertaV3Tokenizer(proto=sentencepiece(
        pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]", eos_piece="[SEP]",
        unk_piece="[UNK]", user_defined_symbols="[MASK]"))
    return (keras_hub.models.DebertaV3Backbone(vocabulary_size=tokenizer.vocabulary_size(), num_heads=2,
                                               max_sequence_length=16, bucket_size=4, **TINY),
            tokenizer, keras_hub.models.DebertaV3TextClassifierPreprocessor)


def f_net():
    tokenizer = keras_hub.models.FNetTokenizer(proto=sentencepiece(**ALBERT_PIECES))
    return (keras_hub.models.FNetBackbone(vocabulary_size=tokenizer.vocabulary_size(), max_sequence_length=16, **TINY),
            tokenizer, keras_hub.models.FNetTextClassifierPreprocessor)


def roformer_v2():
    vocabulary = wordpiece(["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"])
    return (keras_hub.models.RoformerV2Backbone(vocabulary_size=len(vocabulary), num_heads=2, head_size=4, **TINY),
            keras_hub.models.RoformerV2Tokenizer(vocabulary=vocabulary), keras_hub.models.RoformerV2TextClassifierPreprocessor)


def esm():
    vocabulary = ["<cls>", "<pad>", "<eos>", "<unk>", "<mask>"] + list("ACDEFGHIKLMNPQRSTVWY")
    return (keras_hub.models.ESMBackbone(vocabulary_size=len(vocabulary), num_heads=2, **TINY),
            keras_hub.models.ESMTokenizer(vocabulary=vocabulary), keras_hub.models.ESMProteinClassifierPreprocessor)


FAMILIES = {f.__name__: f for f in (bert, distil_bert, roberta, xlm_roberta, electra, albert, deberta_v3, f_net, roformer_v2, esm)}


# --- what tfft gives -----------------------------------------------------------------------

DEBERTA = ["disentangled_attention_encoder_layer_0", "disentangled_attention_encoder_layer_1"]
# family: (layer groups under `pooling="avg"`, the group `pooling="cls"` adds: the pooler where
# the encoder has one with weights; a final normalisation (`top`) is in both)
EXPECTED = {
    "bert": (["embeddings"] + BLOCKS, "pooler"),
    "distil_bert": (["embeddings"] + BLOCKS, None),
    "roberta": (["embeddings"] + BLOCKS, None),
    "xlm_roberta": (["embeddings"] + BLOCKS, None),
    "electra": (["embeddings"] + BLOCKS, "pooler"),
    # ALBERT shares one encoder layer across its depth: it is called twice but is one layer.
    "albert": (["embeddings", "group_0_inner_layer_0"], "pooler"),
    # DeBERTaV3's relative position embedding feeds every encoder layer as a shared
    # parameter tensor: tfft lets its edges cross the boundaries (GroupRules.shared).
    "deberta_v3": (["embeddings"] + DEBERTA, None),
    "f_net": (["embeddings", "f_net_layer_0", "f_net_layer_1"], "pooler"),
    # RoFormerV2 and ESM compute their padding mask from token_ids inside the encoder; ESM
    # ends in a normalisation after the last block.
    "roformer_v2": (["embeddings"] + BLOCKS, None),
    "esm": (["embeddings"] + BLOCKS + ["top"], None),
}
WORD_VOCABULARY = set(EXPECTED) - {"esm"}  # ESM's vocabulary is amino acids: words are unknown


# --- presets ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    """Saves each family's tiny preset on first use: `presets(name) -> (directory, backbone)`."""
    saved = {}

    def get(name):
        if name not in saved:
            keras.utils.set_random_seed(0)
            backbone, tokenizer, preprocessor_cls = FAMILIES[name]()
            directory = str(tmp_path_factory.mktemp(name))
            backbone.save_to_preset(directory)
            tokenizer.save_to_preset(directory)
            if preprocessor_cls is not None:
                preprocessor_cls(tokenizer=tokenizer, sequence_length=SEQUENCE_LENGTH).save_to_preset(directory)
            saved[name] = directory, backbone
        return saved[name]

    return get


def assert_groups(model, groups, expected, rules):
    """The groups tfft cut: the expected names, whole blocks, every weighted layer once, all training something."""
    assert [g.name for g in groups] == expected
    check_groups(model, groups, rules.shared)
    grouped = [layer for g in groups for layer in g.layers]
    assert len(grouped) == len({id(layer) for layer in grouped})
    weighted = [op for op in model.operations if isinstance(op, keras.layers.Layer) and op.weights]
    assert {id(layer) for layer in weighted} <= {id(layer) for layer in grouped}
    assert all(g.num_params > 0 for g in groups), {g.name: g.num_params for g in groups}


def masked_mean(sequence, mask):
    mask = np.asarray(mask, dtype="float32")[..., None]
    return (np.asarray(sequence) * mask).sum(axis=1) / mask.sum(axis=1)


# --- tests --------------------------------------------------------------------------------

@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_loads_from_a_local_preset(family, presets):
    directory, saved = presets(family)
    backbone = build_text_encoder(directory, sequence_length=SEQUENCE_LENGTH)
    model = backbone.model
    assert backbone.pretrained and backbone.family == type(saved).__name__

    # The preset's weights, every one of them (the pooler is not in an avg-pooled model).
    saved_weights = {w.path: w for w in saved.weights}
    assert model.weights and {w.path for w in model.weights} <= set(saved_weights)
    assert all(np.array_equal(w.numpy(), saved_weights[w.path].numpy()) for w in model.weights)

    # The family's own preprocessor: its inputs, padded to the sequence length, framed by
    # the start and end tokens.
    tokens = backbone.preprocess(["the quick fox"])
    assert sorted(tokens) == sorted(model.input)
    assert all(tuple(t.shape) == (1, SEQUENCE_LENGTH) for t in tokens.values())
    ids = [int(i) for i in np.asarray(tokens["token_ids"][0])]
    tokenizer = backbone.preprocess.tokenizer
    assert ids[0] == tokenizer.start_token_id and ids[4] == tokenizer.end_token_id
    assert ids[5:] == [tokenizer.pad_token_id] * (SEQUENCE_LENGTH - 5)
    if family in WORD_VOCABULARY:
        assert [tokenizer.id_to_token(i).lstrip("Ġ▁") for i in ids[1:4]] == ["the", "quick", "fox"]

    # One vector per text: the mean of the saved encoder's token vectors under the mask.
    assert tuple(model.output.shape) == (None, HIDDEN)
    features = model(tokens)
    outputs = saved(tokens)
    sequence = outputs["sequence_output"] if isinstance(outputs, dict) else outputs
    mask = tokens["padding_mask"] if "padding_mask" in tokens else np.asarray(tokens["token_ids"]) != tokenizer.pad_token_id
    np.testing.assert_allclose(features, masked_mean(sequence, mask), rtol=1e-5, atol=1e-6)

    assert_groups(model, layer_groups(model, rules=backbone.rules), EXPECTED[family][0], backbone.rules)

    # weights=None, through the generic entry point: same architecture, fresh weights.
    fresh = build_backbone(directory, weights=None, modality="text", sequence_length=SEQUENCE_LENGTH)
    assert not fresh.pretrained and [w.path for w in fresh.model.weights] == [w.path for w in model.weights]
    assert not all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(fresh.model.weights, model.weights))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_cls_pooling_ends_in_the_pooler_where_there_is_one(family, presets):
    directory, saved = presets(family)
    backbone = build_text_encoder(directory, sequence_length=SEQUENCE_LENGTH, pooling="cls")
    model = backbone.model
    expected, extra = EXPECTED[family]
    has_pooler = extra == "pooler"
    groups = layer_groups(model, rules=backbone.rules)
    assert_groups(model, groups, expected + [extra] * has_pooler, backbone.rules)

    # The pooler's output where there is one, else the [CLS] token's vector.
    tokens = backbone.preprocess(["the quick fox", "a lazy dog sleeps"])
    features = model(tokens)
    assert tuple(model.output.shape) == (None, HIDDEN) and tuple(features.shape) == (2, HIDDEN)
    outputs = saved(tokens)
    if has_pooler:
        reference = outputs["pooled_output"]
    else:
        reference = (outputs["sequence_output"] if isinstance(outputs, dict) else outputs)[:, 0]
    np.testing.assert_allclose(features, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # three tiny text runs, an evaluation and an export per family
@pytest.mark.parametrize("family", ["bert", "xlm_roberta"])
def test_a_fine_tuned_text_model_is_the_backbone_of_another_recipe(family, presets, tmp_path):
    """model.keras carries its tokenizer: a second recipe names only the file, gets the
    groups and the tokenizer of the first, and starts from the fine-tuned weights."""
    from tfft.model_file import extracted_assets
    from tfft.recipe import Recipe
    from tfft.trainer import Trainer

    import shutil

    from tfft.evaluate_run import evaluate_run
    from tfft.export import export_run

    directory = str(tmp_path / "preset")
    shutil.copytree(presets(family)[0], directory)
    rows = ["text,label"] + [f"{line},{'fox' if 'fox' in line else 'other'}" for line in CORPUS * 4]
    (tmp_path / "texts.csv").write_text("\n".join(rows) + "\n")

    def recipe(backbone):
        return Recipe().with_overrides([
            "data.kind='text'", f"data.manifest={str(tmp_path / 'texts.csv')!r}", f"data.sequence_length={SEQUENCE_LENGTH}",
            "data.batch_size=4", "data.validation_split=0.25", f"backbone.name={backbone!r}", "schedule.kind='two_phase'",
            "schedule.steps=4", "schedule.lr=0.01", "schedule.finetune_lr=0.001"])

    first = Trainer(recipe(directory), out_dir=str(tmp_path / "first"), verbose=0)
    first.run()
    model_path = str(tmp_path / "first" / "model.keras")
    with extracted_assets(model_path, "preprocessor") as saved:
        assert "preprocessor.json" in os.listdir(saved) and os.listdir(os.path.join(saved, "assets", "tokenizer"))

    again = Trainer(recipe(model_path), out_dir=str(tmp_path / "again"), verbose=0, dry_run=True)
    backbone = again.build_backbone()
    assert [name for name, _ in backbone.metadata["groups"]] == [g.name for g in first.groups if g.name != "head"]
    texts = ["the lazy fox", "a round dog"]
    for key, value in first.backbone.preprocess(texts).items():
        np.testing.assert_array_equal(backbone.preprocess(texts)[key], value, err_msg=key)
    trained = {w.path: w.numpy() for w in first.backbone.model.weights}
    assert all(np.array_equal(w.numpy(), trained[w.path]) for w in backbone.model.weights)

    metrics = Trainer(recipe(model_path), out_dir=str(tmp_path / "again"), verbose=0).run()
    assert sorted(metrics["per_class"]) == ["fox", "other"]

    # From the run directory alone: without the preset, evaluate and export still tokenise.
    shutil.rmtree(directory)
    assert evaluate_run(tmp_path / "first", tmp_path / "texts.csv")["num_examples"] == 16
    import tensorflow as tf

    from tfft.modalities.text.encoders import stored_preprocessor

    served = tf.saved_model.load(export_run(tmp_path / "first")).signatures["serving_default"](
        text=tf.constant(texts))["probabilities"].numpy()
    model = keras.models.load_model(model_path)
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(model(stored_preprocessor(model_path)(texts))))
    np.testing.assert_allclose(served, expected, atol=1e-5)


def test_a_keras_file_without_a_tokenizer_is_refused_as_a_text_backbone(presets, tmp_path):
    from tfft.errors import BackboneError

    directory, _ = presets("bert")
    bare = build_text_encoder(directory, sequence_length=SEQUENCE_LENGTH).model
    bare.save(str(tmp_path / "bare.keras"))
    with pytest.raises(BackboneError, match="bare.keras holds no tokenizer"):
        build_backbone(str(tmp_path / "bare.keras"), modality="text", sequence_length=SEQUENCE_LENGTH)
