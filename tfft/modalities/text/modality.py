"""Texts: class folders of `.txt` files, CSV and JSON-lines manifests, TFDS; keras-hub
encoders; misclassified examples shown as a table of texts."""

import os

from tfft.errors import DataError
from tfft.modalities import Modality

# data.synthetic -> (the "module:function" that writes the set as NAME.csv and
# NAME_test.csv, its folder in tfft's cache, its training examples per class when
# data.synthetic_per_class is None: 192 in all for each). Modules are imported on first use.
DEMO_SETS = {
    "tickets": ("tfft.modalities.text.demo:make_support_tickets", "support_tickets", 32),
    "contract_clauses": ("tfft.modalities.text.contract_clauses:make_contract_clauses", "contract_clauses", 24),
    "financial_news": ("tfft.modalities.text.financial_news:make_financial_news", "financial_news", 64),
}


class TextModality(Modality):
    name = "text"
    sources = ("path", "manifest", "jsonl", "tfds")
    file_argument = "text"
    extensions = (".txt",)
    synthetic = "tickets"
    synthetic_sets = tuple(DEMO_SETS)

    def backbone_options(self, recipe):
        return dict(sequence_length=recipe.data.sequence_length, pooling=recipe.head.pooling)

    def build_backbone(self, name, weights="pretrained", input_size=224, family=None, load_weights=True,
                       sequence_length=128, pooling="avg"):
        from tfft.modalities.text.encoders import build_text_encoder

        return build_text_encoder(name, weights=weights, sequence_length=sequence_length, pooling=pooling,
                                  load_weights=load_weights)

    def file_backbone(self, backbone, input_size=None, sequence_length=128, pooling="avg"):
        """A text model tfft saved, with the tokenizer it carries (`pooling` is in it already)."""
        import dataclasses

        from tfft.errors import BackboneError
        from tfft.freezing import GroupRules
        from tfft.modalities.text.encoders import SHARED

        preprocess = self.stored_preprocessing(backbone.source, sequence_length=sequence_length)
        if preprocess is None:
            raise BackboneError(f"{backbone.source} holds no tokenizer: a text backbone from a .keras file must be the "
                                "model.keras of a tfft text run (or give the encoder's preset directory instead).")
        rules = backbone.rules and GroupRules(patterns=backbone.rules.patterns, shared=SHARED)
        return dataclasses.replace(backbone, preprocess=preprocess, rules=rules)

    def save_preprocessing(self, backbone, directory):
        """keras-hub's preprocessor (tokenizer, vocabulary, packer) as a preset folder."""
        if hasattr(backbone.preprocess, "save_to_preset"):
            backbone.preprocess.save_to_preset(os.path.join(directory, "preprocessor"))

    def stored_preprocessing(self, model_path, sequence_length=None, **options):
        from tfft.modalities.text.encoders import stored_preprocessor

        return stored_preprocessor(model_path, sequence_length=sequence_length)

    def labelled_tfds(self, name, split):
        # The text pipeline reads TFDS itself: the split as both splits puts all of it in
        # the validation split.
        return dict(tfds=name, tfds_split=[split, split])

    def labelled_source(self, path, given):
        if os.path.isdir(path):
            return dict(path=path)
        if path.endswith(".csv"):
            return dict(manifest=path)
        if path.endswith((".jsonl", ".json")):
            return dict(jsonl=path)
        raise DataError(f"tfft evaluate reads a class-per-folder tree, a CSV or a JSON-lines file for text data. "
                        f"Received: {given}")

    def collect_inputs(self, inputs, recipe=None, stdin=None):
        """Texts: `.txt` files (and folders of them), the `text_column` of CSV and JSON-lines
        files (named `file:row`), and `-` for one text per line on stdin."""
        import csv
        import json
        import sys

        from tfft.predict import list_inputs

        column = recipe.data.text_column if recipe is not None else "text"
        names, texts = [], []
        for given in inputs:
            path = os.path.expanduser(str(given))
            if given == "-":
                for number, line in enumerate(stdin or sys.stdin, 1):
                    if line.strip():
                        names.append(f"-:{number}")
                        texts.append(line.rstrip("\n"))
            elif os.path.isfile(path) and path.endswith((".csv", ".jsonl")):
                with open(path, encoding="utf-8", newline="") as file:
                    rows = csv.DictReader(file) if path.endswith(".csv") else (json.loads(l) for l in file if l.strip())
                    for number, row in enumerate(rows, 1):
                        if column not in row:
                            raise DataError(f"{given} has no '{column}' column (data.text_column). Received: {given}")
                        names.append(f"{given}:{number}")
                        texts.append(str(row[column]))
            else:
                for file_path in list_inputs([given], self.extensions):
                    with open(file_path, encoding="utf-8") as file:
                        names.append(file_path)
                        texts.append(file.read())
        return names, texts

    def resolve_augment(self, augment):
        if augment:
            raise DataError(f"Text data has no augmentation: leave data.augment unset. Received: data.augment={augment!r}")
        return None

    def datasets(self, config, backbone, input_size, dry_run=False, sources=None, statistics=None):
        from tfft.data.build import expand
        from tfft.modalities.text.pipeline import text_datasets

        self.resolve_augment(config.augment)
        return text_datasets(
            path=expand(sources["path"]),
            csv=expand(sources["manifest"]),
            jsonl=expand(config.jsonl),
            tfds=config.tfds,
            text_column=config.text_column,
            label_column=config.label_column,
            label_delimiter=config.label_delimiter,
            multi_label=config.multi_label,
            validation_path=expand(sources["validation_path"]),
            validation_split=config.validation_split,
            tfds_split=tuple(config.tfds_split),
            batch_size=config.batch_size,
            seed=config.seed,
            preprocess=backbone.preprocess,
            class_weights=config.class_weights,
            cache=expand(config.cache),
            holdout=config.holdout,
            on_error=config.on_error,
        )

    def demo_set(self, config, input_size, verbose=0):
        import importlib

        from tfft.data.build import cache_dir, say_demo

        name = config.synthetic
        writer, folder, per_class = DEMO_SETS[name]
        module, function = writer.split(":")
        per_class = config.synthetic_per_class or per_class
        directory = os.path.join(cache_dir(), f"{folder}_{per_class}_seed{config.seed}")
        say_demo(verbose, name, directory)
        make = getattr(importlib.import_module(module), function)
        generated = make(directory, per_class=per_class, seed=config.seed)
        # Each set's test split uses partly different phrasings: it is the validation.
        return dict(manifest=os.path.join(generated, f"{name}.csv"),
                    validation_path=config.validation_path or os.path.join(generated, f"{name}_test.csv"))

    def log_misclassified(self, logger, tag, raw, labels, total, config):
        from tfft.callbacks.examples import misclassified_header

        rows = [f"| {_cell(text)} | {truth} | {guess} |" for text, (_, truth, guess) in zip(raw, labels)]
        table = misclassified_header(labels, total) + "| text | true | predicted |\n|---|---|---|\n" + "\n".join(rows)
        logger.log_examples(tag, text=table)

    def serving(self, recipe, backbone, metadata):
        """UTF-8 strings, tokenised inside the graph: in core TensorFlow ops for WordPiece
        encoders (`serving.WordPieceGraph`: the SavedModel loads with TensorFlow alone),
        else by keras-hub's preprocessor (its ops are TensorFlow Text's: load it after
        `import tensorflow_text`). TFLite has no tokenizer ops: refused with the reason."""
        import tensorflow as tf

        from tfft.export import Serving
        from tfft.modalities.text.serving import WordPieceGraph, unsupported

        preprocess = backbone.preprocess
        if not unsupported(preprocess):
            preprocess = WordPieceGraph(preprocess)
        else:
            preprocess(tf.constant(["a"]))  # built, so the export can track its tokenizer's resources
        return Serving(
            signature=[tf.TensorSpec([None], tf.string, name="text")],
            features=lambda text: preprocess(text),
            lite_refusal="TFLite has no ops for its tokenizer (strings in, token ids out); export a saved_model instead.",
            track=[preprocess],
        )

    def tune_candidates(self, base):
        return [("label_smoothing", dict(base, **{"train.label_smoothing": 0.1}),
                 "label smoothing 0.1 against over-confident fits of few examples")]


def _cell(text):
    text = text.numpy().decode("utf-8", "replace") if hasattr(text, "numpy") else str(text)
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= 200 else text[:197] + "..."
