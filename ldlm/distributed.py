"""Runs split over processes by `accelerate launch` (one process per GPU, or CPU processes
talking over gloo). ldlm has no distribution layer of its own: each process learns its rank
and device from accelerate's `PartialState`; a plain single-process run skips all of it.

    accelerate launch --num-processes 2 -m ldlm encode corpus.txt --autoencoder AE --store S
"""

from __future__ import annotations

import os
from dataclasses import dataclass

MIXED_PRECISIONS = ("fp16", "bf16", "no")  # accelerate's --mixed-precision values


def world_size() -> int:
    """WORLD_SIZE (set by `accelerate launch` and torchrun): the processes of the launch, 1 when
    unset; a value that is not a whole number >= 1 is an InputError (accelerate reads it too)."""
    raw = os.environ.get("WORLD_SIZE")
    if raw is None:
        return 1
    if not raw.strip().isdigit() or int(raw) < 1:
        from ldlm.errors import InputError

        raise InputError(f"environment variable WORLD_SIZE={raw!r} must be a whole number of processes "
                         "(>= 1; `accelerate launch` sets it); unset it to run one process")
    return int(raw)


def launched() -> bool:
    """True inside a multi-process launch (`accelerate launch`, torchrun: WORLD_SIZE > 1)."""
    return world_size() > 1


@dataclass
class Ranks:
    """This process's place in the launch: index (0 is the main process), count, device."""

    index: int = 0
    count: int = 1
    device: str | None = None  # the process's own device under a launch (cuda:<local rank>)
    state: object = None  # accelerate's PartialState, None when run alone

    @property
    def is_main(self) -> bool:
        return self.index == 0

    def wait(self) -> None:
        """Block until every process gets here (no-op when run alone)."""
        if self.state is not None:
            self.state.wait_for_everyone()

    def total(self, value: int) -> int:
        """The sum of `value` over all processes."""
        if self.state is None:
            return value
        from accelerate.utils import gather_object

        return int(sum(gather_object([int(value)])))

    def pick_device(self, device: str | None) -> str | None:
        """Under a launch, a generic device ("cuda" or none) becomes this process's own GPU."""
        if self.state is not None and device in (None, "cuda"):
            return self.device
        return device


def cpu_only() -> bool:
    """A launch on a machine without CUDA: the processes talk over gloo on the CPU.

    accelerate only picks gloo when told the run is on the CPU (`--cpu` alone makes its
    launcher start a single process, so CPU launches use `--multi_gpu`, its torchrun launcher,
    or torchrun itself); ldlm tells it whenever no GPU is there.
    """
    import torch

    return launched() and not torch.cuda.is_available()


def ranks() -> Ranks:
    """This process's Ranks (initialising the process group on first use under a launch)."""
    if not launched():
        return Ranks()
    from accelerate import PartialState

    state = PartialState(cpu=cpu_only())
    return Ranks(state.process_index, state.num_processes, str(state.device), state)


def pick_device(device: str | None = None) -> str:
    """The torch device to run on: `device` checked (InputError for a bad name, or CUDA where
    there is none), else cuda when available, else cpu."""
    import torch

    from ldlm.errors import InputError

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    device = str(device)
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise InputError(f"--device {device!r} is not a torch device; use cpu or cuda:N") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device!r} asked, but CUDA is not available; use --device cpu")
    return device


def check_mixed_precision(value: str) -> None:
    """Refuse a --mixed-precision accelerate cannot run here (one line, InputError)."""
    import torch

    from ldlm.errors import InputError

    if value not in MIXED_PRECISIONS:
        raise InputError(f"--mixed-precision {value!r} must be fp16, bf16 or no")
    if value == "fp16" and not torch.cuda.is_available():
        raise InputError("--mixed-precision fp16 needs a CUDA GPU; use bf16 or no on this machine")
