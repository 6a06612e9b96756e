"""How far each built-in text demo set's test split is from its training split, for a
bag-of-words model.

Each set (support tickets, contract clauses, financial news) is drawn at its recipe's size
for several data seeds. TF-IDF over word 1-2 grams and logistic regression, with C picked
by 5-fold cross-validation on the training split as in `bench/text_quality.py`, is scored
twice: by that cross-validation (held-out examples phrased like the training ones) and on
the test split (phrased partly differently). The drop between the two is what the three-way
split of the phrase pools costs a model that matches words.

    python bench/demo_sets.py               # three data seeds, about a minute on 2 cores
    python bench/demo_sets.py --seeds 1

The last line of output is one JSON object with every figure. Needs scikit-learn:
`pip install -e ".[bench]"`.
"""

import argparse
import json
import statistics
import sys
import time

import numpy as np

from tfft.modalities.text.contract_clauses import contract_clause_splits
from tfft.modalities.text.demo import support_ticket_splits
from tfft.modalities.text.financial_news import financial_news_splits
from tfft.modalities.text.modality import DEMO_SETS

# data.synthetic -> the function drawing it in memory; the sizes are the recipes'.
SPLITS = {
    "tickets": support_ticket_splits,
    "contract_clauses": contract_clause_splits,
    "financial_news": financial_news_splits,
}
TEST_PER_CLASS = {"tickets": 100, "contract_clauses": 100, "financial_news": 200}
TFIDF_CS = tuple(float(c) for c in np.logspace(-2, 3, 11))


def tfidf_scores(train_texts, train_labels, test_texts, test_labels):
    """`(C, cross-validation accuracy, test accuracy)` of TF-IDF and logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline
    from threadpoolctl import threadpool_limits

    pipeline = Pipeline([
        ("tfidf", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
        ("classifier", LogisticRegression(max_iter=5000)),
    ])
    search = GridSearchCV(pipeline, {"classifier__C": list(TFIDF_CS)}, scoring="accuracy",
                          cv=StratifiedKFold(n_splits=5, shuffle=True, random_state=0))
    with threadpool_limits(1):  # many small fits: one BLAS thread is fastest on a busy machine
        search.fit(train_texts, train_labels)
        test = float(np.mean(search.predict(test_texts) == np.asarray(test_labels)))
    return search.best_params_["classifier__C"], float(search.best_score_), test


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="data seeds 0..N-1 (default 3)")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    results = {}
    for name, splits in SPLITS.items():
        per_class = DEMO_SETS[name][2]
        runs = []
        for seed in range(args.seeds):
            start = time.time()
            drawn = splits(per_class, TEST_PER_CLASS[name], seed)
            train_texts, train_labels, test_texts, test_labels, classes = drawn
            c, cv, test = tfidf_scores(train_texts, train_labels, test_texts, test_labels)
            runs.append(dict(seed=seed, C=c, cv_accuracy=cv, test_accuracy=test, seconds=time.time() - start))
            print(f"{name} seed {seed}: C={c:g}, cross-validation accuracy {cv:.3f}, test accuracy {test:.3f}",
                  flush=True)
        results[name] = dict(
            classes=len(classes), train=len(train_texts), test=len(test_texts), runs=runs,
            cv_accuracy=statistics.mean(r["cv_accuracy"] for r in runs),
            test_accuracy=statistics.mean(r["test_accuracy"] for r in runs),
        )

    print(f"\n{'set':<18}{'classes':>8}{'train':>7}{'test':>6}{'CV acc.':>9}{'test acc.':>11}{'drop':>7}")
    for name, r in results.items():
        print(f"{name:<18}{r['classes']:>8}{r['train']:>7}{r['test']:>6}{r['cv_accuracy']:>9.3f}"
              f"{r['test_accuracy']:>11.3f}{r['cv_accuracy'] - r['test_accuracy']:>7.3f}")
    print(f"(means over data seeds {list(range(args.seeds))})")
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
