"""Whether a process (or a process group) of this machine is alive: one rule for the services `alvar up` starts
and for RQ workers."""

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


def group_alive(pgid: int) -> bool:
    """True while any process of the process group ``pgid`` is alive (not a zombie).

    A service's group outlives its leader for a moment: a worker's multiprocessing resource tracker ignores
    SIGTERM and leaves only once every process that could write to it has gone. Where ``/proc`` cannot be read,
    the leader stands for its group.
    """
    try:
        entries = os.listdir("/proc")
    except OSError:
        return process_alive(pgid)
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                state, _parent, group = stat.read().rsplit(") ", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue  # it ended while we looked
        if int(group) == pgid and state != "Z":
            return True
    return False
