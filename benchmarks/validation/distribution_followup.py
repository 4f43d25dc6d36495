"""Follow-up to the first version of the BootStrapper distribution check (disclosed in the coverage report).

The first version compared the real ``BootStrapper``'s 2000 copy values with 2000 copies of the
re-implementation (``default_rng([0, 99])``) and gave KS p = 0.001 for macro-F1, multinomial, batch size 8. This
script measures where that came from, on the same data (the first set of the macro-F1 n=100 cell):

1. the reference mean from 200,000 re-implementation copies, and the same from direct per-batch index draws
   (no merging of equal batches: the literal sampling of ``BootStrapper``);
2. the z-score of the ``default_rng([0, 99])`` 2000-copy sample against that mean;
3. the z-scores of 300 re-implementation samples of 2000 copies (seeds ``[s, 99]``): their sd should be about 1.

Run: ``python benchmarks/validation/distribution_followup.py`` (about a minute on one core).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import coverage_anchors as anchors
from coverage_sim import simulate


def main() -> None:
    torch.set_num_threads(1)
    preds, target = (x[0] for x in simulate("macro_f1", 100, 1))
    ref = anchors.reimpl_bootstrapper_values(
        "macro_f1", preds, target, 8, "multinomial", 200_000, np.random.default_rng(7)
    )
    mean, sd = ref.mean(), ref.std(ddof=1)
    codes = (target * 3 + preds).numpy()
    rng = np.random.default_rng(11)
    reps = 20_000
    idx = np.concatenate([s + rng.integers(0, e - s, (reps, e - s)) for s, e in anchors._batches(100, 8)], axis=1)
    direct = anchors.confusion_metric("macro_f1", torch.from_numpy(anchors._rowcounts(codes[idx], 9))).double()
    print(f"reference mean (200,000 re-implementation copies): {mean:.5f}, sd {sd:.5f}")
    print(
        f"direct per-batch index draws (20,000 copies):      {direct.mean().item():.5f}, sd {direct.std().item():.5f}"
    )
    zs = []
    for s in range(300):
        v = anchors.reimpl_bootstrapper_values(
            "macro_f1", preds, target, 8, "multinomial", 2000, np.random.default_rng([s, 99])
        )
        zs.append((v.mean() - mean) / (sd / np.sqrt(2000)))
    zs = np.array(zs)
    print(f"z of the default_rng([0, 99]) sample: {zs[0]:+.2f}")
    print(f"300 seeds: z mean {zs.mean():+.3f}, sd {zs.std(ddof=1):.3f}, |z| > 2.6 in {(abs(zs) > 2.6).sum()}")


if __name__ == "__main__":
    main()
