"""Label Studio on PostgreSQL: its database URL, Label Studio's variables for it, and a database that exists.

`alvar up --database postgresql://USER[:PASSWORD]@HOST[:PORT]/DB` (``ALVAR_LABEL_STUDIO_DATABASE``) runs Label
Studio 1.23.2 on that database instead of SQLite in the data dir. Label Studio reads ``DJANGO_DB=default`` and
``POSTGRE_NAME/USER/PASSWORD/HOST/PORT`` (its ``core/settings/base.py``); the few connection options a URL may
carry (``?sslmode=require``) reach its driver as libpq's own ``PG*`` variables. The password travels only in
environments, and every message shows the URL :func:`redacted`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from alvar.errors import AlvarError
from alvar.loop.services import ServiceError
from alvar.settings import redacted

DEFAULT_PORT = 5432
# The database every PostgreSQL server has: where CREATE DATABASE and DROP DATABASE are run from.
MAINTENANCE_DATABASE = "postgres"
CONNECT_TIMEOUT_S = 5
# URL options Label Studio's driver can honour: libpq reads them from these variables (Label Studio's
# settings have no way to pass a connection option).
LIBPQ_OPTIONS = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
}
# A database name created here: a plain identifier (PostgreSQL keeps 63 bytes of one).
DATABASE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


@dataclass(frozen=True)
class DatabaseUrl:
    """The parts of a ``postgresql://`` URL, decoded."""

    user: str
    password: str | None
    host: str
    port: int
    name: str
    options: tuple[tuple[str, str], ...]


def parse(url: str) -> DatabaseUrl:
    """The parts of ``url``; an :class:`AlvarError` (the URL redacted) says what is wrong with a bad one."""
    parts = urlsplit(url)
    problem = _problem(parts)
    if problem is not None:
        raise AlvarError(f"Label Studio's database {redacted(url)}: {problem}; "
                         "give postgresql://USER[:PASSWORD]@HOST[:PORT]/DB")
    password = unquote(parts.password) if parts.password is not None else None
    return DatabaseUrl(unquote(parts.username or ""), password, parts.hostname or "", parts.port or DEFAULT_PORT,
                       unquote(parts.path.removeprefix("/")), tuple(parse_qsl(parts.query, keep_blank_values=True)))


def _problem(parts: SplitResult) -> str | None:
    """What keeps ``parts`` from being a database URL Label Studio can use, or None."""
    name = unquote(parts.path.removeprefix("/"))
    unknown = sorted({key for key, _ in parse_qsl(parts.query, keep_blank_values=True)} - set(LIBPQ_OPTIONS))
    try:
        _ = parts.port  # raises for a port that is not a number
    except ValueError:
        return "its port is not a number"
    if parts.scheme not in ("postgresql", "postgres"):
        return "the scheme must be postgresql://"
    if not parts.hostname:
        return "it names no host"
    if not parts.username:
        return "it names no user"
    if not name or "/" in name:
        return "it names no database (/DB at its end)"
    if unknown:
        return f"option {', '.join(unknown)} is not one of {', '.join(LIBPQ_OPTIONS)}"
    return None


def label_studio_env(url: str) -> dict[str, str]:
    """The environment that has Label Studio 1.23.2 use the database at ``url``.

    Without a password in the URL, ``POSTGRE_PASSWORD`` is empty (Label Studio's default would be
    ``postgres``): the driver then finds one the libpq way (``PGPASSWORD``, ``~/.pgpass``) or needs none.
    """
    database = parse(url)
    return {
        "DJANGO_DB": "default",
        "POSTGRE_NAME": database.name,
        "POSTGRE_USER": database.user,
        "POSTGRE_PASSWORD": database.password or "",
        "POSTGRE_HOST": database.host,
        "POSTGRE_PORT": str(database.port),
        **{LIBPQ_OPTIONS[key]: value for key, value in database.options},
    }


def _with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` on the same server, as the same user."""
    return urlunsplit(urlsplit(url)._replace(path="/" + quote(name, safe="")))


def _connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True)


def _reason(error: psycopg.Error, url: str) -> str:
    """The driver's message on one line, without the password should it ever quote it."""
    password = parse(url).password
    text = " ".join(str(error).split())
    return text.replace(password, "***") if password else text


def _unreachable(url: str, error: psycopg.Error) -> ServiceError:
    return ServiceError(f"cannot connect to PostgreSQL at {redacted(url)}: {_reason(error, url)}")


def ensure_database(url: str) -> None:
    """Make sure Label Studio can use the database at ``url``: created (empty) when the server lacks it.

    Raises :class:`ServiceError` naming the redacted URL when PostgreSQL does not answer or refuses the
    login, or the database cannot be created.
    """
    database = parse(url)
    try:
        _connect(url).close()
        return
    except psycopg.OperationalError as error:
        first_failure = error
    try:
        with _connect(_with_database(url, MAINTENANCE_DATABASE)) as admin:
            exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database.name,)).fetchone()
            if exists:
                raise _unreachable(url, first_failure)
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database.name)))
    except psycopg.errors.DuplicateDatabase:
        return  # another `alvar up` created it meanwhile
    except psycopg.OperationalError:
        raise _unreachable(url, first_failure) from None
    except psycopg.Error as error:
        raise ServiceError(f"PostgreSQL at {redacted(url)}: cannot create database {database.name!r}: "
                           f"{_reason(error, url)}") from error


def create_database(admin_url: str, name: str) -> str:
    """A new empty database ``name`` on the server of ``admin_url`` (whose user may create databases); its URL.

    An existing database of that name is an error: it would not be fresh.
    """
    if not DATABASE_NAME.match(name):
        raise AlvarError(f"database name {name!r}: use letters, digits and _ (at most 63), not a digit first")
    _administer(admin_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)), f"create database {name!r}")
    return _with_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    """Drop database ``name`` (if it exists) from the server of ``admin_url``, ending its sessions first.

    ``WITH (FORCE)`` terminates the sessions and drops in one statement, so a client that reconnects in
    between (a Label Studio still running) cannot block it; it needs PostgreSQL 13 (Label Studio needs 14).
    """
    _administer(admin_url, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
                f"drop database {name!r}")


def _administer(admin_url: str, statement: sql.Composed, doing: str) -> None:
    """Run one statement on the server of ``admin_url``; a refusal is a :class:`ServiceError` saying what failed."""
    try:
        with _connect(admin_url) as admin:
            admin.execute(statement)
    except psycopg.Error as error:
        reason = _reason(error, admin_url)
        raise ServiceError(f"PostgreSQL at {redacted(admin_url)}: cannot {doing}: {reason}") from error
