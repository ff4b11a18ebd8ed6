"""Is a pretraining corpus kept out of the finetuning tasks? Per offline task, the examples (train and
eval) that share a 13-word sequence with the corpus (`workbench.data.overlap`); an example of 8-12
words is checked whole, a shorter one is not checked (the `checked` column).

    python benchmarks/corpus_overlap.py                         # english vs every offline task prepared here
    python benchmarks/corpus_overlap.py --corpus sotu --tasks trec,boolq --n 8

Tasks whose files are not in `data/tasks/` are fetched (`workbench prepare-tasks`) unless --no-fetch.
"""

from __future__ import annotations

import argparse
import time

from workbench.data.corpus import read_corpus
from workbench.data.overlap import shared_ngrams
from workbench.tasks.catalogue import OFFLINE_TASKS, get_task
from workbench.tasks.downloads import is_prepared, prepare_task_files


def _text(row: dict) -> str:
    """Every text field of a task row (answer choices included; ids left out)."""
    parts = []
    for key, value in row.items():
        if key in ("id", "idx", "label"):
            continue
        parts += [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)] \
            if isinstance(value, (list, tuple)) else []
    return " ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="english")
    ap.add_argument("--tasks", default=",".join(OFFLINE_TASKS))
    ap.add_argument("--n", type=int, default=13, help="words per shared sequence")
    ap.add_argument("--min-n", type=int, default=8,
                    help="an example of k < n words is checked whole when k >= this (shorter: not checked)")
    ap.add_argument("--no-fetch", action="store_true", help="skip tasks whose files are not prepared")
    args = ap.parse_args()
    t0 = time.perf_counter()
    docs = [d.text for d in read_corpus(args.corpus)]
    print(f"corpus {args.corpus}: {len(docs)} documents, {sum(len(d.split()) for d in docs):,} words "
          f"({time.perf_counter() - t0:.1f} s)")
    print(f"{'task':<16} {'examples':>9} {'checked':>9} {'sharing a sequence':>20}  first shared example")
    for name in args.tasks.split(","):
        task = get_task(name)
        if task.package and not is_prepared(task.package):
            if args.no_fetch:
                print(f"{name:<16} {'(files not prepared: skipped)':>30}")
                continue
            prepare_task_files((name,))
        data = task.load()
        rows = data.train + data.eval
        texts = [_text(r) for r in rows]
        hits = shared_ngrams(docs, texts, args.n, args.min_n)
        checked = [h for h in hits if h is not None]
        first = next((t[:60] for t, h in zip(texts, hits) if h), "")
        print(f"{name:<16} {len(rows):>9,} {len(checked):>9,} {sum(checked):>12,} "
              f"({100 * sum(checked) / max(1, len(checked)):.2f}%)  {first}")


if __name__ == "__main__":
    main()
