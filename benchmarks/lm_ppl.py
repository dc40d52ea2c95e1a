"""The 3-gram perplexity of a comparison's drawn texts, per system and sampling seed.

    python benchmarks/lm_ppl.py WORKDIR

Reads WORKDIR/data/train.txt (the training split) and WORKDIR/samples/*.json (the texts
`benchmarks/ar_comparison.py` drew), fits `ldlm.fluency.NgramLM` (interpolated Kneser-Ney,
order 3) on the training texts and prints the perplexity per word of each set: the
`train_lm_ppl` that `ldlm evaluate` reports beside Mem, for workdirs scored before it existed.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

from ldlm.fluency import NgramLM


def main(work: Path) -> dict[str, list[float]]:
    train = [t for t in (work / "data" / "train.txt").read_text(encoding="utf-8").splitlines() if t.strip()]
    lm = NgramLM.fit(train, order=3)
    out: dict[str, list[float]] = {}
    for path in sorted((work / "samples").glob("*-seed*.json")):
        name = re.sub(r"-n\d+-seed\d+$", "", path.stem)
        out.setdefault(name, []).append(lm.perplexity(json.loads(path.read_text())["texts"]))
    for name, values in out.items():
        print(f"{name}: {np.mean(values):.2f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.2f} "
              f"({', '.join(f'{v:.2f}' for v in values)})")
    return out


if __name__ == "__main__":
    main(Path(sys.argv[1]))
