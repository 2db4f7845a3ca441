"""The MAX device a command was asked for: ``--device cpu|gpu`` on the command line, passed down
as a parameter (never through the environment) to whatever builds or runs a module.

    >>> from gpt2course.device import max_device
    >>> max_device("cpu")            # doctest: +SKIP
    Device(type=cpu,id=0)
"""

from __future__ import annotations

from gpt2course.course import DEFAULT_DEVICE, DEVICES
from gpt2course.errors import CheckFailure


def max_device(name: str | None = DEFAULT_DEVICE):
    """The MAX device for a name: cpu, or gpu (the first accelerator MAX sees)."""
    from max.driver import CPU, Accelerator, accelerator_count

    name = (name or DEFAULT_DEVICE).lower()
    if name == "cpu":
        return CPU()
    if name in ("gpu", "accelerator", "cuda"):
        if accelerator_count() == 0:
            raise CheckFailure("--device gpu: no GPU is visible to MAX on this machine",
                               "run with --device cpu, or check `nvidia-smi`")
        return Accelerator()
    raise CheckFailure(f"unknown device {name!r}", f"use --device {' or --device '.join(DEVICES)}")


def device_name(dev) -> str:
    """How a MAX device is named in a report line: cpu (2 cores), gpu (cuda:0)."""
    import os

    from max.driver import CPU

    if isinstance(dev, CPU):
        return f"cpu ({os.cpu_count()} cores)"
    try:
        return f"gpu ({dev.label}:{dev.id})"
    except Exception:
        return "gpu"
