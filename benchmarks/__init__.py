"""runqueue against raw Celery, side by side on the same broker and worker settings.

Run `python -m benchmarks` (add `--quick` for the smoke test); see docs/benchmarks.md.
"""
