"""The agent runtime: a Celery worker on a managed host that runs the steps of its roles."""
