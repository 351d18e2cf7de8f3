"""Celery tasks: short adapters from a job row to an ml/ call (filled in by the jobs issue)."""
