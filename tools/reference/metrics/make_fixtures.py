#!/usr/bin/env python3
"""Writes crates/domain/tests/fixtures/metrics.json: reference values for rankfit's metrics.

Computed by the libraries the papers and leaderboards use:
  accuracy, F1 (binary, macro), MCC, MSE   scikit-learn
  Pearson, Spearman                        scipy.stats
  ROUGE-1/2/L/Lsum                         Google's rouge-score (Porter stemmer from nltk)
  Porter stems                             nltk.stem.porter.PorterStemmer() (rouge-score's)

Usage (from the repository root):
    pip install scikit-learn scipy rouge-score nltk
    python3 tools/reference/metrics/make_fixtures.py

Deterministic: a fixed seed; re-running with the same library versions rewrites the same
file. The versions used are recorded in the file.
"""

import json
import os
import random

import nltk
import numpy as np
import rouge_score
import scipy
import sklearn
from importlib.metadata import version
from nltk.stem import porter
from rouge_score import rouge_scorer
from scipy import stats
from sklearn import metrics

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
OUT = os.path.join(ROOT, "crates", "domain", "tests", "fixtures", "metrics.json")

rng = random.Random(20240611)


def classification_cases():
    cases = []
    # Binary, varied sizes and class balance.
    for n, p_pos, p_flip in [(5, 0.5, 0.2), (12, 0.3, 0.3), (20, 0.5, 0.1), (33, 0.7, 0.4), (50, 0.5, 0.5),
                             (64, 0.2, 0.25), (100, 0.5, 0.15), (7, 0.9, 0.3)]:
        y = [1 if rng.random() < p_pos else 0 for _ in range(n)]
        p = [1 - v if rng.random() < p_flip else v for v in y]
        cases.append((y, p))
    # Degenerate binary: predicting one class only; no positives anywhere.
    cases.append(([0, 1, 1, 0, 1, 0], [1, 1, 1, 1, 1, 1]))
    cases.append(([0, 0, 0, 0], [0, 0, 1, 0]))
    cases.append(([0, 0, 0], [0, 0, 0]))
    # Multiclass (3 to 5 classes), including classes only predicted or only true.
    for n, k, p_err in [(10, 3, 0.3), (25, 3, 0.2), (40, 4, 0.5), (60, 5, 0.35), (15, 3, 0.0), (80, 4, 0.6)]:
        y = [rng.randrange(k) for _ in range(n)]
        p = [rng.randrange(k) if rng.random() < p_err else v for v in y]
        cases.append((y, p))
    cases.append(([0, 1, 2, 2, 1], [0, 1, 3, 2, 4]))
    out = []
    for y, p in cases:
        binary = set(y) | set(p) <= {0, 1}
        out.append({
            "references": y,
            "predictions": p,
            "accuracy": float(metrics.accuracy_score(y, p)),
            "f1_binary": float(metrics.f1_score(y, p, pos_label=1, average="binary", zero_division=0)) if binary else None,
            "f1_macro": float(metrics.f1_score(y, p, average="macro", zero_division=0)),
            "mcc": float(metrics.matthews_corrcoef(y, p)),
        })
    return out


def regression_cases():
    cases = []
    for n in [3, 5, 8, 13, 21, 34, 55, 89]:
        x = [rng.gauss(0, 1) for _ in range(n)]
        y = [v * rng.uniform(-1, 1) + rng.gauss(0, 0.7) for v in x]
        cases.append((x, y))
    # Ties: STS-B-like scores rounded to 0.2 steps / integers.
    for n in [10, 30, 60]:
        x = [round(rng.uniform(0, 5) * 5) / 5 for _ in range(n)]
        y = [round(min(5, max(0, v + rng.gauss(0, 1)))) for v in x]
        cases.append((x, y))
    cases.append(([1, 2, 2, 3, 3, 3, 4], [1, 1, 2, 2, 3, 3, 3]))
    cases.append(([0.0, 1.0, 2.0, 3.0], [0.0, -2.0, -4.0, -6.0]))
    cases.append(([1e6, 1e6 + 1, 1e6 + 2, 1e6 + 5], [3.0, 1.0, 2.0, 9.0]))
    out = []
    for x, y in cases:
        out.append({
            "references": [float(v) for v in x],
            "predictions": [float(v) for v in y],
            "pearson": float(stats.pearsonr(x, y)[0]),
            "spearman": float(stats.spearmanr(x, y)[0]),
            "mse": float(metrics.mean_squared_error(x, y)),
        })
    return out


ROUGE_PAIRS = [
    ("The quick brown fox jumps over the lazy dog", "The quick brown dog jumps on the log."),
    ("The cat sat on the mat.", "The cat sat on the mat."),
    ("The cat sat on the mat.", ""),
    ("", "Nothing to compare."),
    ("!!! ???", "..."),
    ("He was running and runs daily; she ran.", "She runs, he ran: running is fun."),
    ("The generalization of relational databases", "Generalizations in relation to the database"),
    ("Police arrested 3 men on 12/05/2021 in Paris.", "Three men were arrested in Paris on 12 May 2021, police said."),
    ("Prices rose 3.5% to $1,200.", "prices rose 3 5 percent to 1200 dollars"),
    ("The happy skies were crying; the flies are flying.", "Happily the sky cried and the fly flies."),
    ("Controlling, controlled, controls.", "control controller controllable"),
    ("A man is playing a large flute.", "A man is playing a flute."),
    ("The company's CEO-elect said: 'We'll grow.'", "The CEO elect of the company said they will grow"),
    ("the the the the the", "the the"),
    ("a b c d e f g", "g f e d c b a"),
    ("First sentence here.\nSecond sentence there.", "Second sentence here.\nFirst sentence there."),
    ("One.\n\nTwo three.\nFour five six.", "Four five.\nOne two three six."),
    ("the cat was found under the bed\nthe dog slept", "the cat was under the bed\nthe dog was found sleeping"),
    ("Scientists have discovered a new species of frog in the Amazon rainforest.\nThe frog is bright blue.",
     "A new blue frog species was discovered by scientists.\nIt lives in the Amazon."),
    ("Universities are generalizing their hopefulness about rationalization.",
     "University hopeful rational generalized"),
    ("caresses ponies ties cats feed agreed plastered motoring sing conflated troubled sized",
     "caress pony tie cat fed agree plaster motor sang conflate trouble size"),
    ("hopping tanned falling hissing fizzed failing filing happy enjoy",
     "hop tan fall hiss fizz fail file happiness enjoyment"),
    ("ÉLÈVE Straße naïve café 東京 2024", "eleve strasse naive cafe tokyo 2024"),
    ("news innings outings dying lying tying proceed exceed succeed",
     "new inning outing die lie tie proceeding exceeding succeeding"),
    ("The effective adjustment of the irritant allowance was dependent on adoption.",
     "Effectively adjusting irritants, allowances depended on adopting."),
    ("multi\nline\nwith\nsingle\nwords", "single\nwords\nmulti\nline"),
    ("  leading and trailing spaces  \n", "\nleading spaces and trailing\n\n"),
]

VOCAB = ("run running runs ran runner walk walked walking walks connect connected connection connections "
         "nation national nationalize nationalization happy happiness happily the a an of to in on at and "
         "is was were be been being data database databases 42 2021 model models modeling modelled fly flies "
         "flying relate relational relation relations study studies studying studied").split()


def random_text(n_sent):
    sents = []
    for _ in range(n_sent):
        words = [rng.choice(VOCAB) for _ in range(rng.randint(1, 12))]
        if rng.random() < 0.5:
            words[0] = words[0].capitalize()
        sents.append(" ".join(words) + rng.choice([".", "!", "?", ",", ""]))
    return "\n".join(sents)


def rouge_cases():
    pairs = list(ROUGE_PAIRS)
    for _ in range(20):
        pairs.append((random_text(rng.randint(1, 4)), random_text(rng.randint(1, 4))))
    types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    out = []
    for stem in (True, False):
        scorer = rouge_scorer.RougeScorer(types, use_stemmer=stem)
        for ref, pred in pairs if stem else pairs[:15]:
            s = scorer.score(ref, pred)
            out.append({
                "reference": ref,
                "prediction": pred,
                "use_stemmer": stem,
                **{t: {"precision": s[t].precision, "recall": s[t].recall, "fmeasure": s[t].fmeasure} for t in types},
            })
    return out


STEM_BASES = ("connect relat nation general hope probat rate ceas control roll happ sky enjoy spy fly tri "
              "cri agre feed bleed plaster motor sing conflat troubl siz hop tan fall hiss fizz fail fil "
              "caress poni tie cat radic differ vile analog vietnam predic oper feud decis callous formal "
              "sensit sensib triplic electr good reviv allow infer airlin gyroscop adjust defens irrit "
              "replac depend adopt homolog commun activ angular effect bowdler ston skat studi proceed "
              "news inning outing canning howe exceed succeed die lie archaeo bio theo geolo").split()
STEM_SUFFIXES = ["", "s", "es", "ies", "ed", "ied", "eed", "ing", "y", "ly", "ational", "tional", "enci", "anci",
                 "izer", "bli", "alli", "entli", "eli", "ousli", "ization", "ation", "ator", "alism", "iveness",
                 "fulness", "ousness", "aliti", "iviti", "biliti", "fulli", "logi", "icate", "ative", "alize",
                 "iciti", "ical", "ful", "ness", "al", "ance", "ence", "er", "ic", "able", "ible", "ant", "ement",
                 "ment", "ent", "ion", "sion", "tion", "ou", "ism", "ate", "iti", "ous", "ive", "ize", "e", "ll"]


def stem_cases():
    stemmer = porter.PorterStemmer()
    words = sorted({b + s for b in STEM_BASES for s in STEM_SUFFIXES} | set(VOCAB) |
                   {"yyyy", "syzygy", "toy", "ivy", "by", "oats", "trees", "troubles", "private", "oaten",
                    "orrery", "dies", "ties", "lies", "spied", "tied", "agreed", "bled", "sized", "hopping",
                    "2021s", "abc123ing", "xing", "ying"})
    return {w: stemmer.stem(w) for w in words if len(w) > 3}


def main():
    data = {
        "generated_by": "tools/reference/metrics/make_fixtures.py",
        "versions": {
            "scikit-learn": sklearn.__version__,
            "scipy": scipy.__version__,
            "numpy": np.__version__,
            "rouge-score": version("rouge-score"),
            "nltk": nltk.__version__,
        },
        "classification": classification_cases(),
        "regression": regression_cases(),
        "rouge": rouge_cases(),
        "porter": stem_cases(),
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {OUT}: {len(data['classification'])} classification, {len(data['regression'])} regression, "
          f"{len(data['rouge'])} rouge cases, {len(data['porter'])} stems")


if __name__ == "__main__":
    main()
