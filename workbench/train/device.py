"""The one place that decides device and precision, and records the environment of a run.

    with run_context(exec_cfg) as ctx:             # ctx.device (cuda -> mps -> cpu), ctx.precision
        with autocast(ctx.device, ctx.precision): loss = ...   # bf16 on GPUs that support it, fp32 elsewhere

Process-wide switches (TF32 matmuls on CUDA) are set for the duration of a run and restored after,
so calling the library never changes the caller's torch settings.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from workbench.base.errors import WorkbenchError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise WorkbenchError(f"device {name!r} requested but CUDA is not available; use exec.device=auto")
    if name.startswith("cuda:") and int(name[5:] or 0) >= torch.cuda.device_count():
        raise WorkbenchError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} "
                             f"CUDA device(s); use cuda:0 .. cuda:{torch.cuda.device_count() - 1} or exec.device=auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise WorkbenchError("device 'mps' requested but MPS is not available on this machine; use exec.device=auto")
    return torch.device(name)


@dataclass(frozen=True)
class RunContext:
    """Where and how one run executes: its ExecConfig, the resolved device and precision."""

    exec: Any
    device: torch.device
    precision: str

    @property
    def peak_flops(self) -> float:
        return self.exec.peak_flops or peak_flops(self.device, self.precision)


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's intra-op threads set to `n` for the duration (0: left as they are), then restored."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def run_context(exec_cfg):
    """Resolve `exec_cfg`'s device and precision; TF32 matmuls on CUDA (free speed on Ampere+) for
    the duration, restored afterwards."""
    device = resolve_device(exec_cfg.device)
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield RunContext(exec_cfg, device, resolve_precision(device, exec_cfg.precision))
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def resolve_precision(device: torch.device, precision: str = "auto") -> str:
    """'bf16' only where it pays: CUDA with bf16 support. On a CPU with AVX512-BF16 (no AMX) bf16
    autocast gave the same curves as fp32 (to 4e-4 over 16,500 steps) and no speed: 0.87x at AR16 L2,
    1.0-1.1x at L3-4 in study-converged's sweep (2 workers); CPUs without bf16 instructions emulate it."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return precision


# Dense peak FLOP/s of known GPUs by name fragment (first match wins): (bf16 tensor cores, TF32 tensor
# cores), from the vendors' data sheets. Used for model FLOPs utilisation; exec.peak_flops overrides.
PEAK_FLOPS = (("H100 PCIe", 756e12, 378e12), ("H100 NVL", 835e12, 418e12), ("H100", 989e12, 495e12),
              ("H200", 989e12, 495e12), ("GH200", 989e12, 495e12), ("B200", 2250e12, 1100e12),
              ("A100", 312e12, 156e12), ("L40S", 362e12, 183e12), ("L4", 121e12, 60e12))


def peak_flops(device: torch.device, precision: str) -> float:
    """The device's dense peak FLOP/s at `precision`, or 0 when unknown (CPUs, unlisted GPUs)."""
    if device.type != "cuda":
        return 0.0
    name = torch.cuda.get_device_name(device)
    for fragment, bf16, tf32 in PEAK_FLOPS:
        if fragment in name:
            return bf16 if precision == "bf16" else tf32
    return 0.0


def place(model, device: torch.device):
    """Move a model to `device` with the attention that is fastest there: on a CPU
    `workbench.train.fast` (eager attention with cheap dropout draws and GEMMs in their faster
    orientation; eager beats SDPA's CPU kernel, ~5% at 10M params), SDPA elsewhere. Not saved in
    checkpoints, which load with the default."""
    model = model.to(device)
    if device.type == "cpu":
        from workbench.train.fast import fast_cpu

        fast_cpu(model)
    return model


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None = None):
    """Torch's global RNG (and `device`'s, on CUDA) seeded with `seed` inside the block and restored
    after it: a run is reproducible, and the caller's random state is left as it was."""
    devices = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def git_commit() -> dict:
    """Commit and dirty flag of the workbench source, when it is a git checkout."""
    repo = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                    capture_output=True, text=True, timeout=5).stdout.strip())
        return dict(commit=sha, dirty=dirty)
    except (OSError, subprocess.SubprocessError):
        return dict(commit=None, dirty=None)


def environment(device: torch.device, precision: str) -> dict:
    """Versions, hardware and code identity, written into every run folder."""
    import numpy
    import tokenizers
    import transformers

    from workbench import __version__

    env = dict(
        workbench=__version__, python=sys.version.split()[0], torch=torch.__version__,
        transformers=transformers.__version__, tokenizers=tokenizers.__version__, numpy=numpy.__version__,
        platform=platform.platform(), processor=platform.processor() or platform.machine(),
        cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(), device=str(device),
        precision=precision, hostname=platform.node(), git=git_commit(),
    )
    if device.type == "cuda":
        env.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda)
    return env
