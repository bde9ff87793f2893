"""The machine a run or a benchmark ran on, and how the process uses it.

Figures are only comparable between hosts of one kind: the same 2-core machine trains 4.6x
slower where the CPU lacks AVX-512, so every result records the CPU, the instruction sets ATen
and oneDNN chose, threads and versions. `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
MKL_ENABLE_INSTRUCTIONS=AVX2` (see `AVX2_KERNELS`) runs the AVX2 kernels on any x86 host.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import torch

AVX2_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
CPUINFO = Path("/proc/cpuinfo")


def cpuinfo() -> dict[str, str]:
    """The first processor's /proc/cpuinfo fields ("model name", "flags", ...), read once;
    empty where there is no such file."""
    try:
        first = CPUINFO.read_text().split("\n\n", 1)[0]
    except OSError:
        return {}
    lines = (line.partition(":") for line in first.splitlines())
    return {key.strip(): value.strip() for key, colon, value in lines if colon}


def cpu_model(info: dict[str, str]) -> str:
    return info.get("model name") or platform.processor() or platform.machine()


def cpu_kind(info: dict[str, str]) -> str | None:
    """Vendor, family, model and stepping, e.g. "AuthenticAMD family 25 model 1 stepping 1"
    (Zen 3): a cloud CPU's model name may say only "AMD EPYC", whatever its generation."""
    fields = [info.get(f) for f in ("vendor_id", "cpu family", "model", "stepping")]
    if None in fields:
        return None
    vendor, family, model, stepping = fields
    return f"{vendor} family {family} model {model} stepping {stepping}"


def cpu_flags(info: dict[str, str]) -> set[str]:
    return set(info.get("flags", "").split())


@functools.cache
def onednn_isa() -> str:
    """The instruction set oneDNN dispatches to in this environment, as its verbose mode
    reports it (asked of a child process with the same environment), or "unknown"."""
    probe = ("import torch; cl = torch.channels_last; torch.nn.functional.conv2d("
             "torch.ones(8, 32, 16, 16).to(memory_format=cl), "
             "torch.ones(32, 32, 3, 3).to(memory_format=cl), padding=1)")
    try:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                              env={**os.environ, "ONEDNN_VERBOSE": "1"}, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = re.search(r"isa:(.+)", done.stdout)
    return match[1].strip() if match else "unknown"


def onednn_version() -> str:
    match = re.search(r"MKL-DNN v([\d.]+)", torch.__config__.show())
    return match[1] if match else "none"


def host_info() -> dict:
    """The host as results record it."""
    info = cpuinfo()
    flags = cpu_flags(info)
    return {"cpu": cpu_model(info), "cpu_kind": cpu_kind(info), "cores": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "avx512": any(f.startswith("avx512") for f in flags),
            "aten_isa": torch.backends.cpu.get_cpu_capability(), "onednn_isa": onednn_isa(),
            "kernels_forced": {k: os.environ[k] for k in AVX2_KERNELS if k in os.environ},
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "torch": torch.__version__, "onednn": onednn_version(),
            "python": platform.python_version()}


def describe(host: dict) -> str:
    """One line, e.g. "AMD EPYC (no AVX-512, AuthenticAMD family 25 model 1 stepping 1), 2
    threads, kernels ATen AVX2 / oneDNN Intel AVX2, torch 2.14.1"."""
    device = f", GPU {host['gpu']}" if host.get("gpu") else ""
    kind = f", {host['cpu_kind']}" if host.get("cpu_kind") else ""
    return (f"{host['cpu']} ({'AVX-512' if host['avx512'] else 'no AVX-512'}{kind}), "
            f"{host['threads']} threads, kernels ATen {host['aten_isa']} / oneDNN "
            f"{host['onednn_isa']}{device}, torch {host['torch']}")


def cpp_compiler() -> str | None:
    """The C++ compiler torch.compile builds its CPU kernels with, or None where there is none
    (torch's own search: $CXX, else g++ on Linux)."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
    except ImportError:  # a torch without that search
        return shutil.which(os.environ.get("CXX", "g++"))
    try:
        return get_cpp_compiler()
    except Exception:  # torch raises its own InvalidCxxCompiler when none is found
        return None


def keep_freed_memory() -> bool:
    """Have glibc keep freed large blocks for reuse instead of unmapping them: a training step
    frees and re-allocates the same large activations, and mapping them afresh costs page
    faults (2.2x the step time at 128 x 128 images, benchmarks/speed.py). Linux glibc only;
    returns whether it took effect."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    trim_threshold, mmap_threshold = -1, -3  # malloc.h's M_TRIM_THRESHOLD, M_MMAP_THRESHOLD
    return bool(mallopt(mmap_threshold, 2**30)) and bool(mallopt(trim_threshold, 2**34))
