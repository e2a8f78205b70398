"""glibc malloc's arenas for a long-lived multi-threaded process (the ML backend's server).

glibc gives each thread that meets a busy arena a new one, up to 8 per core, and an arena keeps the peak it once
held. Under waitress, whichever request thread scores a large /predict grows its own arena to that peak, so the
process's resident memory depends on how many threads have scored once, not on the load: the backend fuzzer
measured 1,270-1,490 MB after its warm-up and up to 1.24x that after the same load later. With one arena it held
1,150-1,180 MB and 1.02-1.03x, scoring as fast (bench/fuzz_backend.py, 2 cores; docs/guarantees.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

# mallopt's parameter number for the arena cap (malloc.h).
M_ARENA_MAX = -8


def limit_arenas(count: int) -> bool:
    """Cap glibc malloc's arenas at ``count`` (0 leaves glibc's default); call it before the threads start. False
    where the C library is not glibc (nothing is changed there)."""
    if count == 0:
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        log.info("not glibc (%s): malloc arenas left as they are", name)
        return False
    return bool(mallopt(M_ARENA_MAX, count))
