"""Sessions: `nox -s tests` (the test suite), `nox -s lint` (ruff)."""

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

# The CPU build of torch: pinned here so that a CPU machine never downloads CUDA wheels.
# The package itself keeps a normal torch range, so GPU users get their CUDA build.
TORCH = "torch==2.13.0"


@nox.session
def tests(session: nox.Session) -> None:
    session.install(TORCH)
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs, env={"HF_HUB_OFFLINE": "1"})


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", "ldlm", "tests", "benchmarks", "noxfile.py")
