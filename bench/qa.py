"""How fast the agreement Q&A answers and starts (prints figures; not a test).

    .venv/bin/python bench/qa.py [--repeat 50]

- start-up: ``QA.build`` with a cold jieba cache (an empty cache directory: the pruned
  dictionary is written and jieba builds and dumps its prefix dictionary) and with a warm
  one (the same directory again), after ``import jieba`` (timed on its own);
- latency: every question of data/qa/dev.jsonl and holdout.jsonl, asked ``--repeat``
  times in shuffled order, each call timed alone and computed afresh (not from the
  answer memo): p50, p90, p99 and max, overall and by
  kind of reply. Targets: p50 < 1 ms, p99 < 5 ms; build < 1 s warm.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50, help="times each question is asked (default 50)")
    parser.add_argument("--builds", type=int, default=5, help="warm builds to time (default 5)")
    args = parser.parse_args()

    started = time.perf_counter()
    import jieba  # noqa: F401  (what the service pays once per process)

    imported = time.perf_counter() - started
    from bot.agreement import load_seed
    from bot.qa import DEFAULT_DATA_DIR, QA

    version = load_seed()
    with tempfile.TemporaryDirectory(prefix="qa-bench-") as cache:
        t = time.perf_counter()
        QA.build(version, cache_dir=Path(cache))
        cold = time.perf_counter() - t
        warm = []
        for _ in range(args.builds):
            t = time.perf_counter()
            qa = QA.build(version, cache_dir=Path(cache))
            warm.append(time.perf_counter() - t)

    print("start-up")
    print(f"  import jieba          {imported * 1000:8.1f} ms")
    print(f"  QA.build, cold cache  {cold * 1000:8.1f} ms")
    print(f"  QA.build, warm cache  {statistics.median(warm) * 1000:8.1f} ms median, {min(warm) * 1000:.1f} ms best "
          f"({args.builds} builds)   target < 1000 ms")

    questions = []
    for name in ("dev.jsonl", "holdout.jsonl"):
        path = DEFAULT_DATA_DIR / name
        if path.exists():
            questions += [json.loads(line)["q"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    questions += ["你好", "谢谢！", "？？", "我" * 300]
    calls = questions * args.repeat
    random.Random(7).shuffle(calls)
    timings: dict[str, list[int]] = {}
    # Timed without the answer memo (QA.answer remembers recent questions), so
    # that every call segments, scores and composes: the cost of a new question.
    for q in calls:  # one untimed pass warms the caches of the interpreter
        qa._answer(q)
    for q in calls:
        t = time.perf_counter_ns()
        kind = qa._answer(q).kind
        timings.setdefault(kind, []).append(time.perf_counter_ns() - t)
    every = sorted(ns for values in timings.values() for ns in values)
    print(f"\nlatency of an answer, not memoised: {len(questions)} questions x {args.repeat} = {len(every)} calls")
    print(f"  {'':10} {'calls':>7} {'p50':>9} {'p90':>9} {'p99':>9} {'max':>9}")
    print(_row("all", every) + "   target p50 < 1 ms, p99 < 5 ms")
    for kind in sorted(timings):
        print(_row(kind, sorted(timings[kind])))
    return 0


def _row(name: str, ns: list[int]) -> str:
    def q(p: float) -> str:
        return f"{ns[min(len(ns) - 1, int(len(ns) * p))] / 1e6:7.3f}ms"

    return f"  {name:10} {len(ns):7} {q(0.5):>9} {q(0.9):>9} {q(0.99):>9} {ns[-1] / 1e6:7.3f}ms"


if __name__ == "__main__":
    sys.exit(main())
