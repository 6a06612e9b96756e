"""A token-classification run served on raw text: entity spans out, in core TensorFlow ops.

The export's `serving_default` takes UTF-8 strings, splits them into words and word pieces
with `WordAligner` (the WordPiece tokenizer rebuilt from core ops, so the SavedModel loads
with TensorFlow alone), runs the model, tags each word by the tag its first piece scores
highest, and reads the entities off the tags as `tfft.modalities.text.entities.spans` does
(conlleval: an `I-X` that continues no entity of type `X` starts one). A word past
`sequence_length` pieces is not seen by the model: it is tagged `O` and counted.

Outputs, `[n, entities]` padded per batch to its most entities:

- `entity_start`, `entity_end` (int32, -1 padding): character offsets in the text, so that
  `text[start:end]` (Python, code points) is the entity;
- `entity_type` (string, "" padding), `entity_text` (string), `entity_score` (float32,
  0 padding: the mean over the entity's words of the probability of the tag they got);
- `entity_count` `[n]`: entities per text; `cut_words` `[n]`: words past the sequence.

Example:
    >>> outputs = entity_outputs(model, ["O", "B-DATE", "I-DATE"])
    >>> outputs(dict(aligner(texts), text=texts))["entity_text"]
"""

import tensorflow as tf

from tfft.modalities.text.alignment import WordAligner, check_wordpiece
from tfft.modalities.text.entities import OUTSIDE, parse_tag

ENTITY_OUTPUTS = ("entity_start", "entity_end", "entity_type", "entity_text", "entity_score", "entity_count",
                  "cut_words")


def token_serving(preprocessor, name):
    """The `Serving` of a token-classification run: strings in, the aligner's features out.

    Args:
        preprocessor: the run's keras-hub WordPiece preprocessor.
        name: `backbone.name`, for the error when the tokenizer is not WordPiece.

    Example:
        >>> serving = token_serving(backbone.preprocess, "minilm-l6")
        >>> serving.features(tf.constant(["Acme pays"]))["position"]
    """
    from tfft.export import Serving

    check_wordpiece(preprocessor, name)
    aligner = WordAligner(preprocessor)
    return Serving(
        signature=[tf.TensorSpec([None], tf.string, name="text")],
        features=lambda text: dict(aligner(text), text=tf.reshape(text, [-1])),
        lite_refusal="TFLite has no ops for its tokenizer (strings in, token ids out) nor for reading entity spans; "
                     "export a saved_model instead.",
        track=[aligner],
    )


def entity_outputs(model, class_names):
    """`features -> {entity_start, ...}` (see the module docstring).

    Args:
        model: a Keras model from the encoder's inputs to tag logits
            `[n, sequence_length, len(class_names)]`.
        class_names: the IOB2 tags, in the model's order.

    Example:
        >>> outputs = entity_outputs(model, ["O", "B-DATE", "I-DATE"])
        >>> outputs(serving.features(tf.constant(["due on 1 May 2024"])))["entity_text"]
    """
    parsed = [parse_tag(tag) for tag in class_names]
    types = list(dict.fromkeys(kind for _, kind in parsed if kind is not None))
    kinds = tf.constant([0 if kind is None else types.index(kind) + 1 for _, kind in parsed], tf.int32)
    begins = tf.constant([prefix == "B" for prefix, _ in parsed])
    names = tf.constant(types or [""])
    outside = list(class_names).index(OUTSIDE)

    def outputs(features):
        probabilities = tf.nn.softmax(tf.cast(model(features["inputs"], training=False), tf.float32), axis=-1)
        position, start, end = features["position"], features["start"], features["end"]
        seen = position >= 0
        words = tf.gather(probabilities, tf.maximum(position, 0), batch_dims=1)  # [n, words, tags]
        tag = tf.where(seen, tf.argmax(words, axis=-1, output_type=tf.int32), outside)
        score = tf.where(seen, tf.reduce_max(words, axis=-1), 0.0)
        kind = tf.gather(kinds, tag)
        before = tf.pad(kind, [[0, 0], [1, 0]])[:, :-1]
        starts = (kind > 0) & (tf.gather(begins, tag) | tf.not_equal(before, kind))
        inside = kind > 0
        counts = tf.reduce_sum(tf.cast(starts, tf.int32), axis=1)
        number = tf.cumsum(tf.cast(starts, tf.int32), axis=1) - 1 + tf.cumsum(counts, exclusive=True)[:, None]
        segment, total = tf.boolean_mask(number, inside), tf.reduce_sum(counts)
        first = tf.math.unsorted_segment_min(tf.boolean_mask(start, inside), segment, total)
        last = tf.math.unsorted_segment_max(tf.boolean_mask(end, inside), segment, total)
        mean = tf.math.unsorted_segment_mean(tf.boolean_mask(score, inside), segment, total)
        which = tf.math.unsorted_segment_max(tf.boolean_mask(kind, inside), segment, total)
        text = tf.gather(features["text"], tf.repeat(tf.range(tf.size(counts)), counts))

        def padded(values, default):
            return tf.RaggedTensor.from_row_lengths(values, counts).to_tensor(default)

        return dict(
            entity_start=padded(first, -1),
            entity_end=padded(last, -1),
            entity_type=padded(tf.gather(names, tf.maximum(which - 1, 0)), ""),
            entity_text=padded(tf.strings.substr(text, first, last - first, unit="UTF8_CHAR"), ""),
            entity_score=padded(mean, 0.0),
            entity_count=counts,
            cut_words=tf.reduce_sum(tf.cast((start >= 0) & ~seen, tf.int32), axis=1),
        )

    return outputs
