"""The raw-Celery worker app: `RUNQUEUE_APP=benchmarks.baseline_app:app runqueue worker`
starts it with exactly the worker command line runqueue's own worker gets."""

from benchmarks.tasks import create_raw_app
from runqueue import Settings

app = create_raw_app(Settings.from_env())
