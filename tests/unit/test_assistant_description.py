"""What `runqueue assistants` and GET /assistants show as an assistant's description: its
docstring's first paragraph on one line, never a first line cut mid-sentence."""

from __future__ import annotations

from runqueue import Settings, create_app
from runqueue.worker.task import description_of
from workers.assistants import register_with_journal


def test_a_wrapped_first_paragraph_is_shown_whole_and_the_rest_left_out(tmp_path):
    app = create_app(Settings(data_dir=tmp_path))
    register_with_journal(app)
    shown = description_of(app.tasks["emitter"])
    assert shown.startswith('Emits `count` events (`tick` {"n": 1..count}, with the time')
    assert shown.endswith("so a test can tell what the process tried.")
    assert "\n" not in shown and "  " not in shown


def test_no_docstring_is_no_description():
    class Bare:
        __doc__ = None

    assert description_of(Bare()) == ""
