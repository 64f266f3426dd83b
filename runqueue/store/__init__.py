"""Everything that speaks SQL: engines, transactions, the statements that change runs, reads,
the tables and their migrations. Knows nothing of Celery, the worker or the terminal."""
