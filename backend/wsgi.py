"""WSGI entry for gunicorn: ``gunicorn 'alvar.backend.wsgi:app'``; settings come from the environment."""

from alvar.backend.app import create_app

app = create_app()
