"""One `world-loop` round on the shipped shapes-world models; prints stage times and the results,
asserts nothing (the target: a round in 10 minutes or less on 2 CPU cores).

python bench/world.py                     # the default round
python bench/world.py --reduced           # the round the test suite runs
python bench/world.py --threads 1         # as the paper-pilot timings (one thread)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the `ml`
# package; the repository root goes there instead.
sys.path[0] = str(Path(__file__).resolve().parents[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reduced", action="store_true", help="the reduced round of tests/ml/test_world_loop.py")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--out", default=None, help="keep report.json and grid.png here")
    args = ap.parse_args()

    import dataclasses

    import torch

    from ml.world import SHIPPED_MODELS
    from ml.world.loop import REDUCED, WorldLoopConfig, run_world_loop, summary

    if args.threads:
        torch.set_num_threads(args.threads)
    config = dataclasses.replace(REDUCED if args.reduced else WorldLoopConfig(), seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        report = run_world_loop(config, SHIPPED_MODELS, args.out or tmp)
    print(f"torch threads: {torch.get_num_threads()}")
    print("stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in report["seconds"].items()))
    print(summary(report))


if __name__ == "__main__":
    main()
