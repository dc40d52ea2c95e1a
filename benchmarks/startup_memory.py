"""What a command costs before and around its work: start-up CPU time, peak memory, kernel time.

    python benchmarks/startup_memory.py [--data TEXTS.txt] [--steps 100] [--repeats 3] [--work DIR]

Each figure comes from fresh `python -m ldlm` processes (one torch thread), read from the
kernel's accounting of the child (getrusage: user and system CPU seconds, peak RSS), the best
of `--repeats` for the start-up figures:

    ldlm --help                                 start-up of the command line alone
    ldlm decode ONE.ldlm                         start-up + loading an autoencoder + one text
    ldlm train-autoencoder DATA --max-steps N    peak RSS, user and system CPU per step

To compare two versions, run it once per checkout with PYTHONPATH set to that checkout (the
script runs `python -m ldlm` of whatever `import ldlm` finds).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(args: list[str]) -> dict:
    """Run `python -m ldlm ARGS` in a fresh process; its own CPU seconds, peak RSS and wall time
    (os.wait4: this child's accounting, not the maximum over every child so far)."""
    with open(os.devnull, "wb") as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "ldlm", *args], stdout=out, stderr=err,
                                env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"ldlm {' '.join(args)} failed:\n{err.read().decode()[-2000:]}")
    return {"user_s": round(usage.ru_utime, 2), "sys_s": round(usage.ru_stime, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024), "wall_s": round(wall, 2)}


def best(args: list[str], repeats: int) -> dict:
    runs = [child(args) for _ in range(repeats)]
    return min(runs, key=lambda r: r["user_s"] + r["sys_s"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT / "ldlm" / "corpus" / "e2e_refs.txt")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--work", type=Path, default=ROOT / ".bench" / "startup")
    a = p.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    ae = a.work / "autoencoder"
    import ldlm

    result = {"ldlm": str(Path(ldlm.__file__).parent)}
    train = child(["train-autoencoder", str(a.data), "--out", str(ae), "--max-steps", str(a.steps),
                   "--eval-rows", "20", "--overwrite"])
    result["train-autoencoder"] = {**train, "steps": a.steps}
    one = a.work / "one.ldlm"
    code = ("import sys, torch; from ldlm.autoencoder import load_autoencoder; "
            "from ldlm.latent_file import LatentHeader, write_latent_file; "
            "m = load_autoencoder(sys.argv[1]); z = m.encode_texts(['The Eagle is a cheap pub.']).numpy(); "
            "write_latent_file(sys.argv[2], LatentHeader(m.fingerprint, m.latent_shape, sys.argv[1]), z)")
    subprocess.run([sys.executable, "-c", code, str(ae), str(one)], check=True, capture_output=True)
    result["--help"] = best(["--help"], a.repeats)
    result["decode one latent"] = best(["decode", str(one)], a.repeats)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
