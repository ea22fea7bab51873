"""Background jobs (RQ). Each takes plain ids, reloads state and is idempotent;
the worker runs it inside the Flask app context (see jobs.worker)."""
