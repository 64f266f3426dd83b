"""The worker app of the Procrastinate peer: `procrastinate --app
benchmarks.peer_procrastinate_worker.app worker`, its database from the environment."""

import os

from benchmarks.peer_apps import PROCRASTINATE_DSN_ENV, procrastinate_app

app = procrastinate_app(os.environ[PROCRASTINATE_DSN_ENV])
