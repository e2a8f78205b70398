"""Whether a process of this machine is alive: one rule for the services `alvar up` starts and for RQ workers."""

from __future__ import annotations

import os


def process_alive(pid: int) -> bool:
    """True while a process with this PID exists on this machine (this container) and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True
