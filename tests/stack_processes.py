"""What the stack tests share about processes and the environment of the person running them."""

from __future__ import annotations

from pathlib import Path

# Settings the person running `alvar up` might have; the loop must not pick up theirs.
FOREIGN_SETTINGS = ("REDIS_URL", "MODEL_DIR", "ALVAR_DATA_DIR", "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY",
                    "LABEL_STUDIO_PASSWORD", "BASIC_AUTH_USER", "BASIC_AUTH_PASS", "ALVAR_WEBHOOK_SECRET")


def processes_in_sessions(sessions: set[int]) -> list[str]:
    """Processes (pid and command) whose session is one the stack's services started."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[3]) in sessions:
            found.append(f"{stat.parent.name}: {(stat.parent / 'cmdline').read_bytes()[:120]!r}")
    return found
