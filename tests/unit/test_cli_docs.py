"""What the README and docs say about the command line and the deployment is what the code
does: the payload limits' numbers, the commands that take --json, the compose command, the
folder for a user's own assistants, and `runqueue --version` (issue 25, item 6)."""

from __future__ import annotations

import re
from importlib import metadata

import click
import yaml
from click.testing import CliRunner

from runqueue.api.server import BODY_OVERHEAD_BYTES
from runqueue.cli import main
from runqueue.settings import Settings
from tests.support import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()
API_DOC = (REPO_ROOT / "docs" / "api.md").read_text()
OPERATIONS = (REPO_ROOT / "docs" / "operations.md").read_text()
COMPOSE_TEXT = (REPO_ROOT / "docker-compose.yml").read_text()
DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()


def section(text: str, heading: str) -> str:
    return text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


def numbers(text: str) -> set[int]:
    """Every number of four digits or more, with or without thousands separators."""
    return {int(n.replace(",", "")) for n in re.findall(r"\b\d{1,3}(?:,\d{3})+\b|\b\d{4,}\b", text)}


def test_payload_limits_are_documented_in_one_place_with_the_codes_numbers():
    limits = section(API_DOC, "Payload limits")
    payload = Settings().max_payload_bytes
    body = 2 * payload + BODY_OVERHEAD_BYTES
    assert numbers(limits) == {payload, BODY_OVERHEAD_BYTES, body}, numbers(limits)
    assert "RUNQUEUE_MAX_PAYLOAD_BYTES" in limits and "422" in limits and "413" in limits
    assert f"request body over {body} bytes" in limits  # the API's own 413 detail
    assert "docs/api.md#payload-limits" in README  # the README points there


def commands_with_json(group: click.Group, prefix: str = "") -> set[str]:
    found = set()
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found |= commands_with_json(command, f"{prefix}{name} ")
        elif any("--json" in getattr(param, "opts", ()) for param in command.params):
            found.add(prefix + name)
    return found


def test_the_readme_names_every_command_that_takes_json():
    sentence = re.search(
        r"((?:`[a-z -]+`(?:, | and ))+`[a-z -]+`) take `--json`", " ".join(README.split())
    )
    assert sentence, "the README's sentence on --json is gone"
    listed = set(re.findall(r"`([a-z -]+)`", sentence.group(1)))
    assert listed == commands_with_json(main)


def compose_up(text: str) -> list[str]:
    return [" ".join(c.split()) for c in re.findall(r"docker compose up[^`\n#]*", text)]


def test_the_first_compose_command_is_the_same_everywhere():
    first = "docker compose up -d --build"
    assert compose_up(README)[0] == first
    assert compose_up(section(OPERATIONS, "Deploying with docker compose"))[0] == first
    assert compose_up(COMPOSE_TEXT)[0] == first


def test_a_users_assistants_folder_is_mounted_on_the_images_python_path():
    """docs/operations.md's folder is mounted in every runqueue service at the path the
    Dockerfile puts on PYTHONPATH."""
    services = yaml.safe_load(COMPOSE_TEXT)["services"]
    path = re.search(r"^ENV ASSISTANTS_DIR=(\S+)$", DOCKERFILE, re.M).group(1)
    assert re.search(r"^ENV PYTHONPATH=\$\{ASSISTANTS_DIR\}$", DOCKERFILE, re.M)
    for name in ("migrate", "worker", "flower", "api"):
        assert f"./assistants:{path}:ro" in services[name]["volumes"], name
    assert (REPO_ROOT / "assistants").is_dir()
    assert f"`{path}`" in OPERATIONS and "RUNQUEUE_IMPORTS=chat:register" in OPERATIONS


def test_version_prints_the_installed_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"runqueue {metadata.version('runqueue')}\n"


def test_the_assistants_folder_example_registers_through_runqueue_imports(tmp_path, monkeypatch):
    """assistants/README.md's chat.py, saved as a module and named in RUNQUEUE_IMPORTS as the
    docs say, registers `chat` on the services' app."""
    from runqueue import Settings, create_app

    text = (REPO_ROOT / "assistants" / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    (tmp_path / "chat_folder_example.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    app = create_app(Settings(data_dir=tmp_path, imports="chat_folder_example:register"))
    assert "chat" in app.tasks
