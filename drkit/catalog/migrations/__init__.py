"""Alembic environment and revisions of the catalog schema (run by drkit.catalog.revisions)."""
