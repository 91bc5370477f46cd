"""The HTTP API: a Flask app over the service core."""

from api.app import create_app

__all__ = ["create_app"]
