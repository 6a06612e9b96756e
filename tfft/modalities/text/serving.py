"""Text as an exported model takes it: UTF-8 strings, tokenised inside the graph with core
TensorFlow ops only, so the SavedModel loads with TensorFlow alone (no TensorFlow Text).

keras-hub's WordPiece tokenizer (BERT, DistilBERT, ELECTRA, MiniLM) runs on TensorFlow
Text's ops: Unicode normalisation, regex splitting, case folding and FastWordpiece.
`WordPieceGraph` rebuilds the same steps from `tf.strings` ops and lookup tables:

1. CJK characters get spaces around them (`tf.strings.regex_replace`, the same RE2 pattern);
2. accents are stripped by a per-character table (what NFD followed by removing `\\p{Mn}`
   gives for each code point);
3. whitespace and control characters become spaces, punctuation gets spaces around it, and
   the text is split on spaces (what `regex_split` with kept punctuation gives);
4. words are case-folded by a per-character table;
5. each word is split greedily into the longest vocabulary pieces (`##` after the first),
   all of them at once, one piece per loop step; a word with no split, or longer than 100
   bytes, is `[UNK]`;
6. `[CLS]`, the pieces truncated to fit, `[SEP]`, padding: the packer's output.

The tables are computed with the very ops the training pipeline used (TensorFlow Text when
installed, else the Python fallback keras-hub itself uses), one code point at a time.
What case folding composes across two characters of the input is not reproduced: a letter
followed by a separate combining mark (decomposed text), or a half-width katakana followed
by a separate half-width voicing mark (`ｶﾞ`), stays two characters where keras-hub makes
one, and such a word may tokenise differently. `tests/test_text_serving.py` checks equal
ids on Latin, Greek, Cyrillic, Hebrew, Arabic, Devanagari, Bengali, Korean and CJK text,
accents, ligatures, full-width forms, emoji and control characters.

Example:
    >>> graph = WordPieceGraph(preprocessor)        # a keras-hub BertTextClassifierPreprocessor
    >>> graph(tf.constant(["Refund my order!"]))["token_ids"]
"""

import unicodedata

import numpy as np
import tensorflow as tf

# What FastWordpiece maps longer words to `[UNK]` at (keras-hub's MAX_BYTES_PER_WORD).
MAX_BYTES_PER_WORD = 100
# Code points whose tables are computed: the planes with assigned characters in use, and
# plane 14's tags and variation selectors (removed by accent stripping and case folding).
_PLANES = (range(0x0000, 0xD800), range(0xE000, 0x30000), range(0xE0000, 0xE0200))
_KEEP = b"\xff"  # a table's default: never a character, so "keep the character as it is"


def unsupported(preprocessor):
    """Why `WordPieceGraph` cannot stand in for `preprocessor`, or "" when it can."""
    import keras_hub

    tokenizer = getattr(preprocessor, "tokenizer", None)
    if getattr(preprocessor, "packer", None) is None and not getattr(preprocessor, "built", True):
        preprocessor.build(None)  # keras-hub makes the packer when the layer builds
    packer = getattr(preprocessor, "packer", None)
    if not isinstance(tokenizer, keras_hub.tokenizers.WordPieceTokenizer):
        return f"its tokenizer is a {type(tokenizer).__name__}, not WordPiece"
    if tokenizer.special_tokens_in_strings or not tokenizer.split:
        return "its tokenizer reads special tokens inside strings or takes pre-split words"
    if not isinstance(packer, keras_hub.layers.MultiSegmentPacker) or packer.padding_side != "right":
        return "its packer is not BERT's single-segment packer padding on the right"
    return ""


class WordPieceGraph(tf.Module):
    """A keras-hub WordPiece preprocessor (tokenizer and packer) in core TensorFlow ops.

    Args:
        preprocessor: a keras-hub text classifier preprocessor whose tokenizer is a
            `WordPieceTokenizer` (`unsupported(preprocessor)` is "").

    Calling it on a `[n]` string tensor returns the preprocessor's dictionary:
    `token_ids` `[n, sequence_length]` int32, `padding_mask` bool, and `segment_ids` int32
    when the preprocessor gives them.

    Example:
        >>> WordPieceGraph(preprocessor)(tf.constant(["hello world"]))["padding_mask"]
    """

    def __init__(self, preprocessor):
        super().__init__(name="wordpiece")
        reason = unsupported(preprocessor)
        if reason:
            raise ValueError(f"WordPieceGraph cannot tokenise like this preprocessor: {reason}.")
        tokenizer, packer = preprocessor.tokenizer, preprocessor.packer
        from keras_hub.src.tokenizers import word_piece_tokenizer as reference

        self.lowercase = bool(tokenizer.lowercase)
        self.strip_accents = bool(tokenizer.strip_accents)
        self.split_on_cjk = bool(tokenizer.split_on_cjk)
        self.suffix = tokenizer.suffix_indicator
        self.cjk = reference.CJK_REGEX
        self.whitespace = reference.WHITESPACE_REGEX
        self.punctuation = reference.PUNCTUATION_AND_CJK_REGEX if self.split_on_cjk else reference.PUNCTUATION_REGEX
        vocabulary = list(tokenizer.get_vocabulary())
        self.unknown = vocabulary.index(tokenizer.oov_token)
        self.longest = max(len(token[len(self.suffix):] if token.startswith(self.suffix) else token)
                           for token in vocabulary)
        self.vocabulary = _table(vocabulary, list(range(len(vocabulary))), -1)
        strip, fold = character_tables(self.strip_accents, self.lowercase)
        self.strip = _table(*strip, _KEEP) if strip else None
        self.fold = _table(*fold, _KEEP) if fold else None
        self.sequence_length = int(packer.sequence_length)
        self.start, self.end = _values(packer.start_value), _values(packer.end_value)
        self.pad = int(packer.pad_value)
        probe = preprocessor(tf.constant(["a"]))
        self.keys = sorted(probe) if isinstance(probe, dict) else ["token_ids"]

    def __call__(self, text):
        words = self.words(tf.reshape(text, [-1]))
        ids = self.pieces(words.flat_values)
        ids = tf.RaggedTensor.from_row_splits(ids, words.row_splits).merge_dims(1, 2)
        return self.pack(ids)

    def words(self, text):
        """`[n]` strings -> `[n, (words)]`: pretokenised as keras-hub's `pretokenize`."""
        if self.split_on_cjk:
            text = tf.strings.regex_replace(text, self.cjk, r" \0 ")
        if self.strip is not None:
            text = _map_characters(text, self.strip)
        text = tf.strings.regex_replace(text, self.whitespace, " ")
        text = tf.strings.regex_replace(text, self.punctuation, r" \0 ")
        words = tf.strings.split(text, sep=" ")
        words = tf.ragged.boolean_mask(words, tf.strings.length(words) > 0)
        if self.fold is not None:
            words = words.with_flat_values(_map_characters(words.flat_values, self.fold))
        return words

    def pieces(self, words):
        """`[w]` words -> `[w, (pieces)]` vocabulary ids, greedy longest match first."""
        characters = tf.strings.unicode_split(words, "UTF-8")
        length = tf.cast(characters.row_lengths(), tf.int32)
        count = tf.shape(words)[0]
        sizes = tf.range(1, self.longest + 1)
        too_long = tf.strings.length(words) > MAX_BYTES_PER_WORD

        def step(position, unknown, emitted, steps):
            active = (position < length) & ~unknown
            candidates = tf.strings.substr(tf.repeat(words[:, None], self.longest, axis=1),
                                           tf.repeat(position[:, None], self.longest, axis=1),
                                           tf.tile(sizes[None, :], [count, 1]), unit="UTF8_CHAR")
            candidates = tf.where((position > 0)[:, None], self.suffix + candidates, candidates)
            ids = self.vocabulary.lookup(candidates)
            fits = (ids >= 0) & (position[:, None] + sizes[None, :] <= length[:, None])
            size = tf.reduce_max(tf.where(fits, sizes[None, :], 0), axis=1)
            found = active & (size > 0)
            piece = tf.gather(ids, tf.maximum(size - 1, 0), batch_dims=1)
            emitted = emitted.write(steps, tf.where(found, piece, -1))
            return position + tf.where(found, size, 0), unknown | (active & ~found), emitted, steps + 1

        def going(position, unknown, emitted, steps):
            # At least one step, so that a batch without words still stacks a [1, w] table.
            return tf.equal(steps, 0) | tf.reduce_any((position < length) & ~unknown)

        emitted = tf.TensorArray(tf.int32, size=0, dynamic_size=True, element_shape=[None])
        _, unknown, emitted, steps = tf.while_loop(
            going, step, (tf.zeros_like(length), too_long, emitted, tf.constant(0)))
        table = tf.transpose(tf.reshape(emitted.stack(), [steps, count]))  # [w, steps], -1: none
        table = tf.pad(table, [[0, 0], [0, tf.maximum(1 - steps, 0)]], constant_values=-1)
        # A word without a full split is one [UNK], as FastWordpiece gives it.
        first = tf.equal(tf.range(tf.shape(table)[1]), 0)[None, :]
        table = tf.where(unknown[:, None], tf.where(first, self.unknown, -1), table)
        return tf.RaggedTensor.from_tensor(table, lengths=tf.reduce_sum(tf.cast(table >= 0, tf.int32), axis=1))

    def pack(self, ids):
        """`[n, (ids)]` -> the packer's dense outputs: start, ids cut to fit, end, padding."""
        ids = ids[:, : self.sequence_length - len(self.start) - len(self.end)]
        n = ids.nrows()
        start = tf.tile(tf.constant([self.start], tf.int32), [n, 1])
        end = tf.tile(tf.constant([self.end], tf.int32), [n, 1])
        tokens = tf.concat([tf.RaggedTensor.from_tensor(start), tf.cast(ids, tf.int32),
                            tf.RaggedTensor.from_tensor(end)], axis=1)
        token_ids = tokens.to_tensor(self.pad, shape=[None, self.sequence_length])
        mask = tf.sequence_mask(tokens.row_lengths(), self.sequence_length)
        out = dict(token_ids=token_ids, padding_mask=mask, segment_ids=tf.zeros_like(token_ids))
        return {key: out[key] for key in self.keys}


def _values(value):
    """A packer's start or end value(s) as a list of ids."""
    return [int(v) for v in value] if hasattr(value, "__iter__") else [int(value)]


def _map_characters(text, table):
    """Each character of each string through `table` (a character kept where it has no entry)."""
    characters = tf.strings.unicode_split(text, "UTF-8")
    mapped = table.lookup(characters.flat_values)
    mapped = tf.where(tf.equal(mapped, _KEEP), characters.flat_values, mapped)
    return tf.strings.reduce_join(characters.with_flat_values(mapped), axis=-1)


def _table(keys, values, default):
    return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), default)


def character_tables(strip_accents, lowercase):
    """`(keys, values)` of the accent-stripping and case-folding tables: the code points
    whose result differs from themselves, each computed by the ops keras-hub uses."""
    characters = [chr(c) for plane in _PLANES for c in plane]
    strip = fold = None
    if strip_accents:
        stripped = _strip(characters)
        if lowercase:
            # Case folding composes what stripping left decomposed (Hangul jamo, two-part
            # Indic vowels) within the word; composing each character's own result first
            # gives the same fold, since NFKC does not see the difference.
            stripped = [unicodedata.normalize("NFC", s) for s in stripped]
        strip = _changed(characters, stripped)
    if lowercase:
        folded = _fold(characters)
        fold = _changed(characters, folded)
    return strip, fold


def _changed(characters, results):
    pairs = [(c, r) for c, r in zip(characters, results) if c != r]
    return [c for c, _ in pairs], [r for _, r in pairs]


def _strip(characters):
    try:
        import tensorflow_text as tf_text
    except ImportError:
        return ["".join(c for c in unicodedata.normalize("NFD", ch) if unicodedata.category(c) != "Mn")
                for ch in characters]
    out = tf.strings.regex_replace(tf_text.normalize_utf8(tf.constant(characters), "NFD"), r"\p{Mn}", "")
    return [s.decode("utf-8") for s in out.numpy()]


def _fold(characters):
    try:
        import tensorflow_text as tf_text
    except ImportError:
        from keras_hub.src.tokenizers.word_piece_tokenizer import casefold_utf8

        return [casefold_utf8(c) for c in characters]
    out = tf_text.case_fold_utf8(tf.constant(characters))
    return [s.decode("utf-8", "replace") for s in np.asarray(out.numpy())]
