"""Texts: class folders of `.txt` files, CSV and JSON-lines manifests, TFDS; keras-hub
encoders; misclassified examples shown as a table of texts. With `data.task="tokens"`, a
tag per word (token classification, `tagging.py`) from CoNLL or JSON-lines files."""

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
# The demo set of `data.task="tokens"`: contract sentences tagged with parties, dates,
# amounts and courts (`contract_entities.py`), written as CoNLL files.
TOKENS_DEMO = "contracts"


class TextModality(Modality):
    name = "text"
    sources = ("path", "manifest", "jsonl", "tfds", "conll")
    file_argument = "text"
    extensions = (".txt",)
    synthetic = "tickets"
    # Measured in docs/benchmarks.md ("A pairs stage for few-shot text").
    pairs_up_to = 32
    # `data.task`: the source keys of its training data.
    TASKS = {"classify": ("path", "manifest", "jsonl", "tfds"), "tokens": ("conll", "jsonl")}

    def task(self, config):
        """Classification, or token classification for `data.task="tokens"`; a key of the
        other task is refused here, before anything is built."""
        from tfft import tasks

        if config.task not in self.TASKS:
            raise DataError(f"data.task must be one of {list(self.TASKS)}. Received: data.task={config.task!r}")
        if config.task == "tokens":
            wrong = {"path": None, "manifest": None, "tfds": None, "multi_label": False, "label_delimiter": None,
                     "class_weights": None}
            for key, default in wrong.items():
                if getattr(config, key) != default:
                    raise DataError(f"data.{key} does not apply to data.task='tokens' (tagged sentences come from "
                                    f"data.conll or data.jsonl, one tag per word). Received: data.{key}="
                                    f"{getattr(config, key)!r}")
        elif config.conll is not None:
            raise DataError(f"data.conll holds tagged words, read by data.task='tokens'. Received: data.conll="
                            f"{config.conll!r}, data.task={config.task!r}")
        return tasks.get(config.task)

    def source_keys(self, config):
        self.task(config)
        return self.TASKS[config.task]

    def synthetic_sets(self, config):
        return (TOKENS_DEMO,) if self.task(config).name == "tokens" else tuple(DEMO_SETS)

    def backbone_options(self, recipe):
        if self.task(recipe.data).name == "tokens":
            if recipe.head.pooling != "avg":
                raise DataError(f"head.pooling does not apply to data.task='tokens': every token gets its tag. "
                                f"Received: head.pooling={recipe.head.pooling!r}")
            return dict(sequence_length=recipe.data.sequence_length, pooling=None)
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

        if pooling is None:
            raise BackboneError(f"data.task='tokens' fine-tunes a keras-hub encoder (a preset name or directory); "
                                f"{backbone.source} is a .keras model, whose outputs are a head's. Received: "
                                f"backbone.name={backbone.source!r}")
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
        # Any other file is tagged words in CoNLL's layout (token classification runs).
        return dict(conll=path)

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
        if self.task(config).name == "tokens":
            from tfft.modalities.text.token_pipeline import token_datasets

            return token_datasets(
                conll=expand(sources.get("conll", config.conll)),
                jsonl=expand(config.jsonl),
                validation_path=expand(sources["validation_path"]),
                validation_split=config.validation_split,
                tokens_column=config.tokens_column,
                tags_column=config.tags_column,
                batch_size=config.batch_size,
                seed=config.seed,
                preprocess=backbone.preprocess,
                cache=expand(config.cache),
                holdout=config.holdout,
                encoder=getattr(backbone, "name", None),
            )
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
        if name == TOKENS_DEMO:
            from tfft.modalities.text.contract_entities import TEST_FILE, TRAIN_FILE, make_contract_entities

            per_type = config.synthetic_per_class or 75
            directory = os.path.join(cache_dir(), f"contract_entities_{per_type}_seed{config.seed}")
            say_demo(verbose, name, directory)
            generated = make_contract_entities(directory, per_type=per_type, seed=config.seed)
            # Its test sentences are phrased differently and name other parties: the validation.
            return dict(conll=os.path.join(generated, TRAIN_FILE),
                        validation_path=config.validation_path or os.path.join(generated, TEST_FILE))
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

        rows = [f"| {_cell(text)} | {_cell(truth)} | {_cell(guess)} |" for text, (_, truth, guess) in zip(raw, labels)]
        header = ("| sentence | true entities | predicted entities |" if config.task == "tokens" else
                  "| text | true | predicted |")
        table = misclassified_header(labels, total) + header + "\n|---|---|---|\n" + "\n".join(rows)
        logger.log_examples(tag, text=table)

    def serving(self, recipe, backbone, metadata):
        """UTF-8 strings, tokenised inside the graph: in core TensorFlow ops for WordPiece
        encoders (`serving.WordPieceGraph`: the SavedModel loads with TensorFlow alone),
        else by keras-hub's preprocessor (its ops are TensorFlow Text's: load it after
        `import tensorflow_text`). TFLite has no tokenizer ops: refused with the reason."""
        import tensorflow as tf

        from tfft.export import Serving
        from tfft.modalities.text.serving import WordPieceGraph, unsupported

        if self.task(recipe.data).name == "tokens":
            from tfft.modalities.text.token_serving import token_serving

            return token_serving(backbone.preprocess, recipe.backbone.name)
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
