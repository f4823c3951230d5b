#!/usr/bin/env python3
"""encodechka, replicated in Python with scikit-learn/scipy, for the Rust evaluator's parity check.

What it does, in order:
  1. reads the encodechka data files (Python's csv module: the columns used hold no value pandas would turn
     into NaN, so this reads exactly what `pd.read_csv` reads);
  2. embeds every text with a Hugging Face checkpoint through transformers (float32, CPU): per sentence the
     un-normalised CLS vector, the attention-masked mean and the pooler output (when the model has one),
     truncation at 128 tokens; per NER text the words from razdel fed as one pre-split sequence truncated at
     the tokenizer's own limit, each word's vector the mean of its sub-token vectors (zeros when cut off);
  3. exports those vectors (`--export DIR`: .npy + .json; `encodechka-eval --npy DIR` reads them);
  4. scores the exported vectors following the original evaluator (avidale/encodechka,
     encodechka_eval/task_specific_evaluators.py and tasks.py) and writes one row per task x variant x
     classifier to `--out` (default scripts/reference/encodechka_minilm_reference.csv).

Protocol details kept from the original: the *_norm variants are `torch.nn.functional.normalize`; STS, PI and
NLI use the plain dot product even for un-normalised variants; NLI = 3-fold shuffled KFold (seed 1) out-of-fold
predictions of LogisticRegression(max_iter=10_000) on that single feature; SA/IC/ICX = LogisticRegression and
KNeighborsClassifier(3, weights="distance"); TI/IA = ROC AUC of LogisticRegression's probability (IA reads the
binary column `y`); NE1/NE2 = train_test_split(test_size=0.5, random_state=1), BIO labels with the word-0 quirk,
SGDClassifier(log loss, shuffle=True, random_state=1, early_stopping=False, tol=1e-4), macro F1 without `O`.
One deliberate difference: NER features are cast to float64 before the SGD fit. The original ran on
scikit-learn < 1.3, which always converted to float64; newer releases keep float32 and would compute
something else.

`--fixture DIR` additionally writes a small, commit-able parity fixture (evenly spaced subsets of every task,
only the columns the tasks read, vectors cut to the first 16 dimensions, the same scores computed on them) for
the Rust test suite; `--reuse-export --fixture-only` rewrites just the fixture from an existing export (seconds,
where the full scoring takes about ten minutes on one core).

Run with the reference venv:  /root/venvs/sekator-ref/bin/python scripts/reference/encodechka_reference.py \
    --model data/models/all-MiniLM-L6-v2 --data data/encodechka --export runs/minilm-export
"""

import argparse
import csv
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import razdel
import scipy.stats
import sklearn
import torch
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.model_selection import KFold, cross_val_predict, train_test_split
from sklearn.neighbors import KNeighborsClassifier
from transformers import AutoModel, AutoTokenizer

REPO = Path(__file__).resolve().parents[2]
VARIANTS = ["cls", "mean", "cls_norm", "mean_norm", "pooler", "pooler_norm"]
TASKS = ["STS", "PI", "NLI", "SA", "TI", "IA", "IC", "ICX", "NE1", "NE2"]
NER_FILES = {"NE1": "factru.json", "NE2": "rudrec.json"}


# ----------------------------------------------------------------------------------------------- data


def read_csv(path, columns):
    if not path.is_file():
        sys.exit(f"data file {path} is missing: run `just fetch-data` (or pass --data)")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for c in columns:
        if rows and c not in rows[0]:
            sys.exit(f"{path}: no column `{c}`")
    return {c: [r[c] for r in rows] for c in columns}


def as_pandas_would(values):
    """pandas parses an all-integer column as int64 (and so sklearn's classes sort numerically)."""
    try:
        return np.array([int(v) for v in values])
    except ValueError:
        try:
            return np.array([float(v) for v in values])
        except ValueError:
            return np.array(values, dtype=object)


def load_tasks(data, tasks):
    out = {}
    for t in tasks:
        if t == "STS":
            d = read_csv(data / "stsb_dev.csv", ["sentence1", "sentence2", "similarity_score"])
            out[t] = ("pairs", d["sentence1"], d["sentence2"], as_pandas_would(d["similarity_score"]))
        elif t == "PI":
            d = read_csv(data / "para_gold.csv", ["text_1", "text_2", "class"])
            out[t] = ("pairs", d["text_1"], d["text_2"], as_pandas_would(d["class"]))
        elif t == "NLI":
            d = read_csv(data / "xnli_ru.csv", ["sentence1", "sentence2", "gold_label"])
            out[t] = ("nli", d["sentence1"], d["sentence2"], as_pandas_would(d["gold_label"]))
        elif t in ("SA", "TI", "IA", "IC", "ICX"):
            stem, xtr, xte, y, kind = {
                "SA": ("SentiRuEval2016_small", "text", "text", "answer", "acc"),
                "TI": ("toxic", "text", "text", "toxic", "auc"),
                "IA": ("inappropriate", "text", "text", "y", "auc"),
                "IC": ("intents", "text", "text", "label", "acc"),
                "ICX": ("intents", "answer", "text", "label", "acc"),
            }[t]
            tr = read_csv(data / f"{stem}_train.csv", [xtr, y])
            te = read_csv(data / f"{stem}_test.csv", [xte, y])
            out[t] = (kind, tr[xtr], as_pandas_would(tr[y]), te[xte], as_pandas_would(te[y]))
        elif t in NER_FILES:
            path = data / NER_FILES[t]
            if not path.is_file():
                sys.exit(f"data file {path} is missing: run `just fetch-data` (or pass --data)")
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
            tr_x, te_x, tr_y, te_y = train_test_split(d["texts"], d["labels"], test_size=0.5, random_state=1)
            out[t] = ("ner", tr_x, tr_y, te_x, te_y)
    return out


def sentence_texts(task):
    kind = task[0]
    if kind in ("pairs", "nli"):
        return list(task[1]) + list(task[2])
    if kind in ("acc", "auc"):
        return list(task[1]) + list(task[3])
    return []


def make_word_labels(text, entities):
    """The original's make_word_labels, quirks included (word 0 is never labelled)."""
    words = []
    char2word = np.zeros(len(text), dtype=int) - 1
    for i, w in enumerate(razdel.tokenize(text)):
        words.append(w.text)
        char2word[w.start:w.stop] = i
    labels = ["O"] * len(words)
    for entity_type, e_start, e_end in entities:
        b = False
        for char in range(e_start, e_end):
            token_id = char2word[char]
            if not token_id or token_id == -1:
                continue
            if labels[token_id] != "O":
                continue
            if not b:
                labels[token_id] = "B-" + entity_type
                b = True
            else:
                labels[token_id] = "I-" + entity_type
    return words, labels


# ------------------------------------------------------------------------------------------ embedding


class Embedder:
    def __init__(self, model_dir, threads):
        torch.set_num_threads(threads)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModel.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
        self.dim = self.model.config.hidden_size
        with torch.no_grad():
            out = self.model(**self.tokenizer(["x"], return_tensors="pt"))
        self.has_pooler = getattr(out, "pooler_output", None) is not None

    @torch.no_grad()
    def sentences(self, texts, batch_size=64):
        """cls, mean, pooler (un-normalised) per text; batches of similar length, attention-masked."""
        n = len(texts)
        cls = np.zeros((n, self.dim), dtype=np.float32)
        mean = np.zeros((n, self.dim), dtype=np.float32)
        pooler = np.zeros((n, self.dim), dtype=np.float32) if self.has_pooler else None
        order = sorted(range(n), key=lambda i: len(texts[i]))
        done, t0 = 0, time.time()
        for s in range(0, n, batch_size):
            idx = order[s : s + batch_size]
            t = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=128, return_tensors="pt")
            out = self.model(**t)
            h = out.last_hidden_state
            m = t["attention_mask"].unsqueeze(-1).float()
            cls[idx] = h[:, 0, :].numpy()
            mean[idx] = ((h * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)).numpy()
            if pooler is not None:
                pooler[idx] = out.pooler_output.numpy()
            done += len(idx)
            if s // batch_size % 50 == 0:
                print(f"  sentences {done}/{n} ({time.time() - t0:.0f} s)", file=sys.stderr)
        return cls, mean, pooler

    @torch.no_grad()
    def words(self, words):
        """get_word_vectors_with_bert of the original."""
        b = self.tokenizer(words, is_split_into_words=True, return_tensors="pt", truncation=True)
        vectors = self.model(**b).last_hidden_state[0].numpy()
        word_ids = b.word_ids()
        out = np.zeros((len(words), self.dim), dtype=np.float32)
        for w in range(len(words)):
            rows = [i for i, wid in enumerate(word_ids) if wid == w]
            if rows:
                out[w] = vectors[rows].mean(0)
        return out


def export(path, texts, cls, mean, pooler, word_lists, word_vectors, meta):
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    (tmp / "sentences.json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    np.save(tmp / "sent_cls.npy", cls)
    np.save(tmp / "sent_mean.npy", mean)
    if pooler is not None:
        np.save(tmp / "sent_pooler.npy", pooler)
    (tmp / "words.json").write_text(json.dumps(word_lists, ensure_ascii=False), encoding="utf-8")
    np.save(tmp / "word_vectors.npy", word_vectors)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)


def load_export(path):
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    texts = json.loads((path / "sentences.json").read_text(encoding="utf-8"))
    vecs = {"cls": np.load(path / "sent_cls.npy"), "mean": np.load(path / "sent_mean.npy")}
    if (path / "sent_pooler.npy").exists():
        vecs["pooler"] = np.load(path / "sent_pooler.npy")
    word_lists = json.loads((path / "words.json").read_text(encoding="utf-8"))
    wv = np.load(path / "word_vectors.npy")
    return meta, texts, vecs, word_lists, wv


# ------------------------------------------------------------------------------------------- scoring


class Vectors:
    """Lookup of exported vectors by text / word list, producing the original's variants."""

    def __init__(self, texts, vecs, word_lists, word_vectors):
        self.row = {t: i for i, t in enumerate(texts)}
        self.vecs = vecs
        self.words = {}
        off = 0
        for ws in word_lists:
            self.words[json.dumps(ws, ensure_ascii=False)] = word_vectors[off : off + len(ws)]
            off += len(ws)

    def variants(self):
        return [v for v in VARIANTS if v.split("_")[0] in self.vecs]

    def matrix(self, texts, variant):
        base = variant.split("_")[0]
        m = self.vecs[base][[self.row[t] for t in texts]]
        if variant.endswith("_norm"):
            m = torch.nn.functional.normalize(torch.from_numpy(m)).numpy()
        return m

    def word_rows(self, words):
        return self.words[json.dumps(words, ensure_ascii=False)]


def score_task(task, vec):
    kind = task[0]
    rows = []  # (variant, classifier, score)
    if kind in ("pairs", "nli"):
        _, t1, t2, y = task
        for v in vec.variants():
            scores = np.sum(vec.matrix(t1, v) * vec.matrix(t2, v), axis=1)
            if kind == "pairs":
                rows.append((v, "dot", scipy.stats.spearmanr(y, scores).correlation))
            else:
                cv = KFold(n_splits=3, shuffle=True, random_state=1)
                preds = cross_val_predict(LogisticRegression(max_iter=10_000), scores[:, np.newaxis], y, cv=cv)
                rows.append((v, "lr", np.mean(y == preds)))
    elif kind == "acc":
        _, xtr, ytr, xte, yte = task
        for v in vec.variants():
            a, b = vec.matrix(xtr, v), vec.matrix(xte, v)
            models = {"lr": LogisticRegression(max_iter=10_000), "knn": KNeighborsClassifier(n_neighbors=3, weights="distance")}
            for name, clf in models.items():
                clf.fit(a, ytr)
                rows.append((v, name, np.mean(clf.predict(b) == yte)))
    elif kind == "auc":
        _, xtr, ytr, xte, yte = task
        for v in vec.variants():
            lr = LogisticRegression(max_iter=10_000).fit(vec.matrix(xtr, v), ytr)
            rows.append((v, "lr", roc_auc_score(yte, lr.predict_proba(vec.matrix(xte, v))[:, 1])))
    elif kind == "ner":
        _, trx, tr_labels, tex, te_labels = task

        def stack(texts, labels):
            xs, ys = [], []
            for text, spans in zip(texts, labels):
                words, word_labels = make_word_labels(text, spans)
                xs.append(vec.word_rows(words))
                ys.extend(word_labels)
            return np.concatenate(xs).astype(np.float64), np.array(ys)

        x_train, y_train = stack(trx, tr_labels)
        x_test, y_test = stack(tex, te_labels)
        clf = SGDClassifier(loss="log_loss", shuffle=True, verbose=0, random_state=1, early_stopping=False, tol=1e-4)
        clf.fit(x_train, y_train)
        preds = clf.predict(x_test)
        f1 = f1_score(y_test, preds, average="macro", labels=sorted(set(y_test).difference({"O"})))
        rows.append(("words", "sgd", f1))
    return rows


def score_all(tasks, vec, out_csv):
    table = []
    for name, task in tasks.items():
        t0 = time.time()
        rows = score_task(task, vec)
        best = max(range(len(rows)), key=lambda i: (rows[i][2], -i))
        for i, (v, c, s) in enumerate(rows):
            table.append({"task": name, "variant": v, "classifier": c, "score": f"{float(s):.6f}", "best": int(i == best)})
        v, c, s = rows[best]
        print(f"{name:4s} {s:.4f}  ({v}/{c})  {time.time() - t0:.1f} s", file=sys.stderr)
    if out_csv:
        out_csv.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_csv.with_name(out_csv.name + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=["task", "variant", "classifier", "score", "best"], lineterminator="\n")
            w.writeheader()
            w.writerows(table)
        os.replace(tmp, out_csv)
    return table


# ------------------------------------------------------------------------------------------- fixture

# Sizes keep the committed fixture near 1.3 MB. Every accuracy test set has >= 160 rows (the Rust test allows
# one borderline row there); 16 dimensions keep k-NN on scikit-learn's brute-force path (more than 15
# features), as on the real vectors; these NER subsets are ones where the SGD model finds some entities.
FIXTURE_ROWS = {"STS": 100, "PI": 100, "NLI": 180, "SA": (150, 160), "TI": (100, 100), "IA": (100, 100), "IC": (200, 160)}
FIXTURE_NER_TEXTS = {"NE1": 6, "NE2": 150}
FIXTURE_DIMS = 16
# Columns kept in the fixture's CSV files: the ones the tasks read (plus IA's `inappropriate`, the
# probability column next to the binary `y` that must be read instead).
FIXTURE_COLUMNS = {
    "stsb_dev.csv": ["sentence1", "sentence2", "similarity_score"],
    "para_gold.csv": ["text_1", "text_2", "class"],
    "xnli_ru.csv": ["gold_label", "sentence1", "sentence2"],
    "SentiRuEval2016_small": ["text", "answer"],
    "toxic": ["text", "toxic"],
    "inappropriate": ["text", "inappropriate", "y"],
    "intents": ["answer", "text", "label"],
}


def write_fixture(data, vec, fixture):
    """Subsets of every data file + their vectors (first FIXTURE_DIMS dims) + the scores on exactly those."""
    fixture = Path(fixture)
    if fixture.exists():
        shutil.rmtree(fixture)
    (fixture / "data").mkdir(parents=True)

    def spread(items, n):
        """n items evenly spaced over the list, in order: the files are sorted by label in blocks (SA's and TI's
        first rows are all one class), so a head would lose classes."""
        return [items[i * len(items) // n] for i in range(min(n, len(items)))]

    def subset_csv(name, n):
        with open(data / name, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader)
            rows = spread(list(reader), n)
        keep = FIXTURE_COLUMNS.get(name) or FIXTURE_COLUMNS[name.rsplit("_", 1)[0]]
        cols = [i for i, c in enumerate(header) if c in keep]
        with open(fixture / "data" / name, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow([header[i] for i in cols])
            w.writerows([[r[i] for i in cols] for r in rows])

    subset_csv("stsb_dev.csv", FIXTURE_ROWS["STS"])
    subset_csv("para_gold.csv", FIXTURE_ROWS["PI"])
    subset_csv("xnli_ru.csv", FIXTURE_ROWS["NLI"])
    for stem, key in [("SentiRuEval2016_small", "SA"), ("toxic", "TI"), ("inappropriate", "IA"), ("intents", "IC")]:
        subset_csv(f"{stem}_train.csv", FIXTURE_ROWS[key][0])
        subset_csv(f"{stem}_test.csv", FIXTURE_ROWS[key][1])
    for key, name in NER_FILES.items():
        with open(data / name, encoding="utf-8") as f:
            d = json.load(f)
        n = FIXTURE_NER_TEXTS[key]
        small = {"texts": spread(d["texts"], n), "labels": spread(d["labels"], n)}
        (fixture / "data" / name).write_text(json.dumps(small, ensure_ascii=False), encoding="utf-8")
    shutil.copy(data / "LICENSE", fixture / "data" / "LICENSE")

    tasks = load_tasks(fixture / "data", TASKS)
    texts = []
    seen = set()
    for t in tasks.values():
        for s in sentence_texts(t):
            if s not in seen:
                seen.add(s)
                texts.append(s)
    word_lists = []
    for key in NER_FILES:
        _, trx, _, tex, _ = tasks[key]
        word_lists += [[w.text for w in razdel.tokenize(x)] for x in list(trx) + list(tex)]
    cut = {k: np.ascontiguousarray(v[[vec.row[t] for t in texts], :FIXTURE_DIMS]) for k, v in vec.vecs.items()}
    wv = np.concatenate([vec.word_rows(ws)[:, :FIXTURE_DIMS] for ws in word_lists]).astype(np.float32)
    meta = {"model": "fixture", "dim": FIXTURE_DIMS, "has_pooler": "pooler" in cut, "note": "subset of the MiniLM export, first dims only"}
    export(fixture / "vectors", texts, cut["cls"], cut["mean"], cut.get("pooler"), word_lists, wv, meta)
    _, t2, v2, w2, wv2 = load_export(fixture / "vectors")
    score_all(tasks, Vectors(t2, v2, w2, wv2), fixture / "expected.csv")


# ---------------------------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=REPO / "data/models/all-MiniLM-L6-v2")
    ap.add_argument("--data", type=Path, default=REPO / "data/encodechka")
    ap.add_argument("--export", type=Path, required=True, help="directory for the exported vectors (not committed)")
    ap.add_argument("--reuse-export", action="store_true", help="score an existing --export without re-embedding")
    ap.add_argument("--out", type=Path, default=REPO / "scripts/reference/encodechka_minilm_reference.csv")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--fixture", type=Path, help="also write the small parity fixture here")
    ap.add_argument("--fixture-only", action="store_true",
                    help="with --reuse-export and --fixture: write only the fixture (skip the full scores and --out)")
    args = ap.parse_args()
    if args.fixture_only and not (args.reuse_export and args.fixture):
        sys.exit("--fixture-only needs --reuse-export and --fixture")

    tasks = load_tasks(args.data, [t.strip().upper() for t in args.tasks.split(",") if t.strip()])
    if not args.reuse_export:
        t0 = time.time()
        emb = Embedder(args.model, args.threads)
        texts, seen = [], set()
        for t in tasks.values():
            for s in sentence_texts(t):
                if s not in seen:
                    seen.add(s)
                    texts.append(s)
        print(f"embedding {len(texts)} texts with {args.model}", file=sys.stderr)
        cls, mean, pooler = emb.sentences(texts)
        word_lists, word_vectors = [], []
        for key in NER_FILES:
            if key in tasks:
                _, trx, _, tex, _ = tasks[key]
                for text in list(trx) + list(tex):
                    words = [w.text for w in razdel.tokenize(text)]
                    word_lists.append(words)
                    word_vectors.append(emb.words(words))
        wv = np.concatenate(word_vectors) if word_vectors else np.zeros((0, emb.dim), dtype=np.float32)
        meta = {
            "model": args.model.name,
            "dim": emb.dim,
            "has_pooler": emb.has_pooler,
            "sentence_max_length": 128,
            "word_max_length": emb.tokenizer.model_max_length,
            "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__,
                         "sklearn": sklearn.__version__, "numpy": np.__version__, "scipy": scipy.__version__},
            "embed_seconds": round(time.time() - t0, 1),
        }
        export(args.export, texts, cls, mean, pooler, word_lists, wv, meta)
        print(f"exported to {args.export} in {time.time() - t0:.0f} s", file=sys.stderr)
    meta, texts, vecs, word_lists, wv = load_export(args.export)
    vec = Vectors(texts, vecs, word_lists, wv)
    if not args.fixture_only:
        score_all(tasks, vec, args.out)
    if args.fixture:
        write_fixture(args.data, vec, args.fixture)


if __name__ == "__main__":
    main()
