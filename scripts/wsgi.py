"""WSGI entry for any WSGI server: ``waitress-serve alvar.scripts.wsgi:app``; settings come from the environment.

`alvar backend` runs :func:`alvar.backend.server.serve` instead, which also applies the settings' bounds to the
server (threads, body size, idle connections).
"""

from alvar.backend.app import configure_logging
from alvar.scripts.backend_app import backend_app
from alvar.settings import load_settings

configure_logging()
app = backend_app(load_settings())
