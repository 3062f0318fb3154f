"""Ingest on the console side: uploads, jobs, their status, and the worker that runs them."""
