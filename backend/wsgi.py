"""WSGI entry for any WSGI server: ``waitress-serve alvar.backend.wsgi:app``; settings come from the environment.

`alvar backend` runs :func:`alvar.backend.server.serve` instead, which also applies the settings' bounds to the
server (threads, body size, idle connections).
"""

from alvar.backend.app import configure_logging, create_app

configure_logging()
app = create_app()
