"""Shared by the engine and the agents: settings, message models, names, the Celery app, the store."""
