"""WSGI entry for gunicorn: ``gunicorn 'alvar.backend.wsgi:app'``; settings come from the environment."""

import logging

from alvar.backend.app import create_app

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
app = create_app()
