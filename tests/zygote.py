"""A pre-imported "zygote" that forks `ldlm` command lines for the tests (issue 33).

Why: the fault tests (tests/test_faults.py) start some sixty `python -m ldlm ...` processes and
kill them at seeded points. Each real process pays the interpreter start-up and the imports of
torch, transformers, diffusers, zarr, accelerate and datasets, some 4-5 CPU-seconds, which was
most of what those tests cost on a 2-core machine. Here one helper process per pytest worker
(started on first use, with subprocess, so it never holds pytest's state) imports all that once
and then, per request, `os.fork()`s a child that runs the same entry as `python -m ldlm ARGS`
(`runpy` on the `ldlm` package, as `-m` does) with the given environment, working folder and
stdout/stderr files.

What the child reproduces of a real process, for what the tests check:
- the exit code as Popen reports it: 0/1/2/130/143 from `sys.exit`, and -N for a death by
  signal N (SIGKILL is -9); an uncaught KeyboardInterrupt kills the child with SIGINT, as
  CPython does;
- signals sent by pid (the child is a normal process; the tests signal its pid directly);
- a fresh-process shutdown: non-daemon threads joined (`threading._shutdown`), atexit handlers
  run, stdout and stderr flushed, then `os._exit`;
- the signal dispositions of a fresh Python (the zygote installs no handler of its own; the
  child restores those it had at start-up and unblocks every signal), stdin on /dev/null, a
  fresh seed for numpy's global generator, `sys.path[0]` the working folder as `-m` sets it.

Only a process's parent can wait for it, so the zygote reaps its children (through pidfds) and
reports each exit status over a pipe; `start_ldlm` returns a Popen-like handle (pid, poll,
wait(timeout), send_signal, kill, terminate, returncode).

Libraries read some environment variables when imported, so a zygote serves only requests
with the environment it imported under (pytest's PYTEST_CURRENT_TEST aside); another one
gets a zygote of its own (an in-process CLI test sets quiet_libraries()'s variables in pytest's
environment, for one).

Forking is safe because the zygote never computes with torch (no thread pool exists): it
imports with OMP_NUM_THREADS=1 and checks before each fork that it runs a single Python thread
and no native one besides jemalloc's background thread (pyarrow's, which jemalloc makes
fork-safe: it holds its locks across fork() and the child starts without it). Otherwise, or
under LDLM_TEST_REAL_PROCESSES=1, `start_ldlm` starts a real `python -m ldlm` process.

Not reproduced: warnings that a library prints while being imported (a real process imports
after `quiet_libraries()` too, so there are none today), the per-process hash seed (children
share the zygote's), and anything that depends on the parent pid.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

REAL_ENV = "LDLM_TEST_REAL_PROCESSES"
# what the zygote imports once: the libraries and every ldlm module the commands import lazily
PRELOAD = ("numpy", "torch", "safetensors.torch", "zarr", "transformers", "diffusers", "accelerate",
           "datasets", "huggingface_hub", "ldlm.cli", "ldlm.autoencoder", "ldlm.autoencoder.train",
           "ldlm.encode", "ldlm.train", "ldlm.sample", "ldlm.decode", "ldlm.info", "ldlm.store",
           "ldlm.data", "ldlm.outputs", "ldlm.latent_file", "ldlm.atomic", "ldlm.run", "ldlm.loop",
           "ldlm.denoisers", "ldlm.schedulers", "ldlm.diffusion", "ldlm.mbr", "ldlm.guidance",
           "ldlm.denoisers.mlp", "ldlm.denoisers.embeddings", "ldlm.denoisers.condition_encoder",
           "accelerate.utils", "diffusers.training_utils", "diffusers.schedulers.scheduling_ddpm",
           "diffusers.schedulers.scheduling_ddim", "transformers.generation.utils",
           "transformers.models.bert.modeling_bert", "transformers.models.gpt2.modeling_gpt2",
           "torch.utils.serialization", "pydantic", "tabulate", "typer._adapters", "typer._click.decorators",
           "sacrebleu", "scipy.io", "threadpoolctl", "rich._emoji_codes")
# variables that differ from test to test and that nothing reads at import
_VOLATILE = {"PYTEST_CURRENT_TEST"}


# ----- the zygote (a separate process) ------------------------------------------------------
# native threads that survive a fork by design: jemalloc (pyarrow's, started when datasets is
# imported) locks its state around fork() and runs no background thread in the child
_FORK_SAFE = {"jemalloc_bg_thd"}


def _threads() -> list[str]:
    """The threads of this process that a fork could leave in a bad state: Python threads
    besides this one, and native ones (Linux) besides this one and the fork-safe."""
    names = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
    try:
        tasks = sorted(os.listdir("/proc/self/task"), key=int)
    except OSError:
        return names
    for task in tasks:
        if int(task) == threading.get_native_id():
            continue
        try:
            with open(f"/proc/self/task/{task}/comm") as fh:
                comm = fh.read().strip()
        except OSError:  # ended meanwhile
            continue
        if comm not in _FORK_SAFE:
            names.append(f"native {comm}")
    return names


def _send(fd: int, message: dict) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def _exit_code(code) -> int:
    """What CPython's exit makes of `SystemExit(code)`."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except Exception:  # noqa: BLE001
        pass
    return 1


def _child(request: dict, dispositions: dict, keep_closed: list[int]) -> None:
    """In the forked child: become `python -m ldlm ARGS`; never returns."""
    code, sigint = 1, False
    try:
        for fd in keep_closed:
            os.close(fd)
        signal.set_wakeup_fd(-1)
        for sig, handler in dispositions.items():
            signal.signal(sig, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.chdir(request["cwd"])
        os.environ.clear()  # in place: modules that hold os.environ see the new one
        os.environ.update(request["env"])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(out, fd)
            os.close(out)
        sys.path[0] = os.getcwd()  # as `python -m` sets it
        if "numpy" in sys.modules:  # a fresh process seeds numpy's global generator afresh
            sys.modules["numpy"].random.seed()
        sys.argv = ["ldlm", *request["args"]]
        before = set(sys.modules) if request.get("report") else None
        import runpy

        try:
            runpy.run_module("ldlm", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc.code)
        except KeyboardInterrupt:
            sys.excepthook(*sys.exc_info())
            code, sigint = 130, True
        except BaseException:  # noqa: BLE001 - printed as the interpreter would
            sys.excepthook(*sys.exc_info())
            code = 1
        # the interpreter's shutdown: join non-daemon threads, run atexit handlers, flush
        try:
            threading._shutdown()
        except BaseException:  # noqa: BLE001
            pass
        atexit._run_exitfuncs()
        if before is not None:
            with open(request["report"], "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"args": request["args"][:1],
                                     "imported": sorted(set(sys.modules) - before)}) + "\n")
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - CPython exits 120 when it cannot flush
                code = 120 if code == 0 else code
        if sigint:  # CPython dies by SIGINT after an uncaught KeyboardInterrupt
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
    except BaseException:  # noqa: BLE001
        try:
            import traceback

            traceback.print_exc()
        except BaseException:  # noqa: BLE001
            pass
    finally:
        os._exit(code)


def serve(requests: int, replies: int) -> None:
    """The zygote's loop: read spawn requests (JSON lines), fork, reap, report exits."""
    dispositions = {}
    for sig in signal.valid_signals():
        try:
            handler = signal.getsignal(sig)
        except (OSError, ValueError):
            continue
        if handler is not None and sig not in (signal.SIGKILL, signal.SIGSTOP):
            dispositions[sig] = handler
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import importlib

    from ldlm.cli.console import quiet_libraries  # imports ldlm.cli, as `python -m ldlm` does

    filters = warnings.filters[:]
    quiet_libraries()  # the variables a command sets before it imports its libraries
    failed = []
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a child imports it itself
            failed.append(f"{name}: {exc}")
    warnings.filters[:] = filters  # each child's command quiets them again
    warnings._filters_mutated()
    pidfds: dict[int, int] = {}  # pidfd -> pid
    pids: set[int] = set()  # without pidfds (polled)
    buffer = b""
    _send(replies, {"ready": True, "threads": _threads(), "failed": failed})

    def reaped(pid: int, status: int) -> None:
        _send(replies, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})

    try:
        while True:
            ready, _, _ = select.select([requests, *pidfds], [], [], 0.02 if pids else None)
            for pid in list(pids):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    pids.discard(pid)
                    reaped(pid, status)
            for fd in ready:
                if fd in pidfds:
                    pid = pidfds.pop(fd)
                    os.close(fd)
                    reaped(pid, os.waitpid(pid, 0)[1])
            if requests not in ready:
                continue
            data = os.read(requests, 1 << 16)
            if not data:
                return
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for request in map(json.loads, lines):
                threads = _threads()
                if threads or threading.active_count() != 1:
                    _send(replies, {"fallback": f"threads in the zygote: {threads}"})
                    continue
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _child(request, dispositions, [requests, replies, *pidfds])
                try:
                    pidfds[os.pidfd_open(pid)] = pid
                except (AttributeError, OSError):
                    pids.add(pid)
                _send(replies, {"pid": pid})
    finally:  # the tests are over (or gone): no child outlives the zygote
        for pid in [*pidfds.values(), *pids]:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass


# ----- the test side --------------------------------------------------------------------------
class Forked:
    """A forked `ldlm` process, as far as the tests use subprocess.Popen."""

    def __init__(self, zygote: Zygote, pid: int, args: list[str]):
        self.zygote, self.pid, self.args = zygote, pid, args
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.zygote.collect(0)
            self.returncode = self.zygote.codes.pop(self.pid, None)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout)
            self.zygote.collect(left)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Zygote:
    """The test side of one zygote process."""

    def __init__(self, env: dict):
        self.env = dict(env)
        self.codes: dict[int, int] = {}  # exit codes reported, by pid
        self.live: set[int] = set()  # children not reported ended yet
        self.replies_to_spawns: list[dict] = []
        self.buffer = b""
        req_r, self.requests = os.pipe()
        self.replies, rep_w = os.pipe()
        fd, log = tempfile.mkstemp(prefix="ldlm-zygote-", suffix=".log")
        self.log = Path(log)
        with os.fdopen(fd, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, __file__, str(req_r), str(rep_w)], pass_fds=(req_r, rep_w),
                env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        os.close(req_r)
        os.close(rep_w)
        self.ready = self._reply()  # after the imports: {"ready": True, "threads": 1, ...}

    def collect(self, timeout: float | None) -> None:
        """Read what the zygote reported within `timeout` seconds (None: wait for something)."""
        ready, _, _ = select.select([self.replies], [], [], timeout)
        if not ready:
            return
        data = os.read(self.replies, 1 << 16)
        if not data:
            raise RuntimeError(f"the zygote died: {self.log.read_text(errors='replace')[-3000:]}")
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for message in map(json.loads, lines):
            if "exit" in message:
                self.codes[message["exit"]] = message["code"]
                self.live.discard(message["exit"])
            else:
                self.replies_to_spawns.append(message)

    def _reply(self) -> dict:
        while not self.replies_to_spawns:
            self.collect(None)
        return self.replies_to_spawns.pop(0)

    def spawn(self, args: list[str], env: dict, cwd: str, stdout: Path, stderr: Path) -> Forked | str:
        """A forked child, or why not (a string)."""
        request = {"args": args, "env": env, "cwd": cwd, "stdout": str(stdout), "stderr": str(stderr)}
        if os.environ.get("LDLM_ZYGOTE_REPORT"):  # where children list what they imported
            request["report"] = os.environ["LDLM_ZYGOTE_REPORT"]
        data = (json.dumps(request) + "\n").encode()
        while data:
            data = data[os.write(self.requests, data):]
        reply = self._reply()
        if "pid" not in reply:
            return reply.get("fallback", str(reply))
        self.live.add(reply["pid"])
        return Forked(self, reply["pid"], args)

    def close(self) -> None:
        """End the zygote (it kills and reaps any child still running) and wait for it, so
        that its CPU time and its children's count as this process's children's."""
        os.close(self.requests)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.replies)
        self.log.unlink(missing_ok=True)


_zygotes: list[Zygote] = []  # by environment; the newest last


def close() -> None:
    """End this process's zygotes (conftest's pytest_unconfigure, and atexit): each is waited
    for, so that its CPU time and its children's count as pytest's children's."""
    while _zygotes:
        _zygotes.pop().close()


def _differs(a: dict, b: dict) -> list[str]:
    return sorted(k for k in {*a, *b} - _VOLATILE if a.get(k) != b.get(k))


def _zygote_for(env: dict) -> Zygote:
    """The zygote that imported under `env` (libraries read some variables at import: a
    process started with another environment would not be the same), started if none did;
    older ones with no child left running are ended."""
    for zygote in _zygotes:
        if not _differs(zygote.env, env):
            return zygote
    for old in [z for z in _zygotes if not z.live]:
        _zygotes.remove(old)
        old.close()
    if not _zygotes:
        atexit.register(close)
    _zygotes.append(Zygote(env))
    return _zygotes[-1]


def start_ldlm(args: list, env: dict, stdout: Path, stderr: Path, cwd: str | os.PathLike | None = None):
    """`python -m ldlm ARGS` with stdout and stderr into these files (created before it starts,
    as Popen's are): forked from the zygote for `env`, or a real process (subprocess.Popen)
    under LDLM_TEST_REAL_PROCESSES=1 or where no zygote can fork it safely. Either way a
    Popen-like handle."""
    args = [str(a) for a in args]
    cwd = os.fspath(cwd) if cwd is not None else os.getcwd()
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        if os.environ.get(REAL_ENV, "") in ("", "0") and hasattr(os, "fork"):
            try:
                child = _zygote_for(env).spawn(args, env, cwd, stdout, stderr)
            except (OSError, RuntimeError) as exc:
                child = f"no zygote ({exc})"
            if isinstance(child, Forked):
                return child
            warnings.warn(f"a real process for `ldlm {args[0]}`: {child}", stacklevel=2)
        return subprocess.Popen([sys.executable, "-m", "ldlm", *args], stdout=out, stderr=err, env=env,
                                cwd=cwd)


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
