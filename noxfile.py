"""Sessions: `nox -s tests` (the test suite), `nox -s lint` (ruff), `nox -s bench` (benchmarks),
`nox -s compare -- e2e|ag_news` (ldlm against a same-budget GPT-2).

`nox -s bench` runs the quickstart into .bench/quickstart (reused when there) and the fast
benchmarks on its artefacts, about 15 minutes on 2 CPU cores; `nox -s bench -- full` adds the
E2E-scale ones (hours on a CPU; see benchmarks/README.md for each one's command and figures).
"""

import os

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

# The CPU build of torch: pinned here so that a CPU machine never downloads CUDA wheels.
# The package itself keeps a normal torch range, so GPU users get their CUDA build.
TORCH = "torch==2.13.0"


def _cores() -> int:
    """The cores this process may use (a container's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@nox.session
def tests(session: nox.Session) -> None:
    """The suite on one pytest-xdist worker per core (at most 8; each computes on one thread,
    see tests/conftest.py), the 25 slowest tests listed at the end. More arguments go to
    pytest: `nox -s tests -- -n 0 -k decode` runs a few tests in one process."""
    session.install(TORCH)
    session.install("-e", ".[test]")
    workers = str(min(8, _cores()))
    session.run("pytest", "-n", workers, "--dist", "worksteal", "--durations", "25", *session.posargs,
                env={"HF_HUB_OFFLINE": "1"})


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", "ldlm", "tests", "benchmarks", "noxfile.py")


@nox.session
def bench(session: nox.Session) -> None:
    session.install(TORCH)
    session.install("-e", ".")  # the evaluation dependencies are core ones
    env = {"HF_HUB_OFFLINE": "1"}
    qs = ".bench/quickstart"
    ae, store, run = f"{qs}/autoencoder", f"{qs}/latents.zarr", f"{qs}/run"
    refs = "ldlm/corpus/e2e_refs.txt"
    session.run("ldlm", "quickstart", "--out", qs, env=env)
    session.run("python", "benchmarks/encode_throughput.py", ae, "--data", refs, "--column", "text",
                "--rows", "4096", env=env)
    session.run("python", "benchmarks/decode_throughput.py", ae, store, env=env)
    session.run("python", "benchmarks/train_throughput.py", store, "--objective", "x0", env=env)
    session.run("python", "benchmarks/samplers.py", run, store, env=env)
    session.run("python", "benchmarks/reconstruction.py", ae, "--data", "ldlm/corpus/e2e_heldout.txt",
                "--column", "text", env=env)
    if "full" in session.posargs:
        session.run("python", "benchmarks/ar_comparison.py", "--corpus", "e2e", env=env)
        session.run("python", "benchmarks/load.py", "--work", ".bench/load", env=env)
        session.run("python", "benchmarks/streaming.py", env={**env, "OMP_NUM_THREADS": "1"})


@nox.session
def compare(session: nox.Session) -> None:
    """ldlm with its defaults against a GPT-2 of the same size and CPU budget on one corpus:
    `nox -s compare -- e2e` or `-- ag_news` (more arguments go to benchmarks/ar_comparison.py,
    e.g. `-- ag_news --budget 7200`, `-- e2e --split dev`). The two train side by side, one
    thread each (about half an hour of wall time per 1,800 CPU-seconds), then every system is
    drawn at 5 sampling seeds and scored in one process (about 16 more minutes at N = 1,000);
    the JSON lands in benchmarks/results/."""
    session.install(TORCH)
    session.install("-e", ".")
    corpus, *extra = session.posargs or ["e2e"]
    env = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = " ".join(["python", "benchmarks/ar_comparison.py", "--corpus", corpus, *extra])
    session.run("bash", "-c", f"{cmd} --system ldlm & a=$!; {cmd} --system ar & b=$!; wait $a && wait $b",
                env=env, external=True)
    session.run("python", "benchmarks/ar_comparison.py", "--corpus", corpus, *extra, env=env)
