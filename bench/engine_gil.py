"""Does an LMDB commit release the GIL? (a measurement, not a test: it depends on scheduling)

    python -m bench.engine_gil [--rounds 30]

A worker thread runs an operation repeatedly while the main thread spins on a counter; the
fraction of calls during which the counter moved is reported. A C call that holds the GIL cannot
be preempted, so the counter moves only during calls that release it (or by a rare switch at
the call's edges). Compared in the same run: a durable LMDB commit vs a C loop that holds the
GIL for a similar time.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
from collections.abc import Callable

from multiraft.engine import CF_KV, LmdbEngine, WriteBatch

from .common import emit


def main_thread_progress_during(op: Callable[[], object], rounds: int) -> float:
    counter = 0
    moved = 0
    done = threading.Event()

    def worker() -> None:
        nonlocal moved
        for _ in range(rounds):
            before = counter
            op()
            if counter != before:
                moved += 1
        done.set()

    t = threading.Thread(target=worker)
    t.start()
    while not done.is_set():
        counter += 1
    t.join()
    return moved / rounds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        engine = LmdbEngine(d, fsync=True)
        i = 0

        def commit() -> None:
            nonlocal i
            i += 1
            wb = WriteBatch()
            wb.put(CF_KV, b"%08d" % i, b"v" * 128)
            engine.write(wb)

        during_commit = main_thread_progress_during(commit, args.rounds)
        during_control = main_thread_progress_during(lambda: sum(range(30_000)), args.rounds)
        engine.close()
    emit(
        "engine_gil",
        {
            "rounds": args.rounds,
            "main_thread_progress_during_commit": round(during_commit, 3),
            "main_thread_progress_during_gil_holding_control": round(during_control, 3),
        },
        save=not args.no_save,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
