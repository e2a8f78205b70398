"""The projects alvar has heard of (a webhook, the backend's /setup, `alvar init`): what the sweep reconciles."""

from __future__ import annotations

from typing import cast

from redis import Redis

KNOWN_PROJECTS_KEY = "alvar:projects"


def remember_project(connection: Redis, project_id: int) -> None:
    connection.sadd(KNOWN_PROJECTS_KEY, project_id)


def known_projects(connection: Redis) -> list[int]:
    return sorted(int(member) for member in cast(set[bytes], connection.smembers(KNOWN_PROJECTS_KEY)))
