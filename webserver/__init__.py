"""Serving a product's Flask app in production: gunicorn over HTTPS, bounded, for the desk and central alike.

Shared by both sides, importing neither: each passes its app factory and its ``[web]`` settings.
"""
