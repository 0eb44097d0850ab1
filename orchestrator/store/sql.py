"""SQL that both SQL stores build alike (store/archive.py: SQLite, store/postgres.py:
PostgreSQL); only the parameter mark differs (`?` for sqlite3, `%s` for psycopg)."""

from __future__ import annotations


def task_filters(mark: str, status: str | None = None, repo: str | None = None
                 ) -> tuple[list[str], list[str]]:
    """The WHERE clauses (to be joined with AND) and their parameters for tasks of one
    status and/or one repository; both lists empty for no filter."""
    clauses: list[str] = []
    params: list[str] = []
    if status is not None:
        clauses.append(f"status = {mark}")
        params.append(status)
    if repo is not None:
        clauses.append(f"repo = {mark}")
        params.append(repo)
    return clauses, params
