"""A LangGraph project's langgraph.json (the file `langgraph dev` reads) as runqueue's app.

    runqueue --config langgraph.json worker        # serves exactly the file's graphs
    runqueue --config langgraph.json serve         # the API lists exactly them

`graphs` maps each assistant to "./path/to/file.py:variable" (relative to the file's folder)
or "package.module:variable": a compiled graph, a StateGraph (compiled here, without a
checkpointer: runqueue gives the run its own), or a factory (handed to langgraph_assistant).
`dependencies` that are paths go on the import path, after the file's own folder; package
names are pip's business. `env` (a .env file or a mapping) fills the process environment
before the graphs are imported; a variable already set wins, and RUNQUEUE_* settings are
never read from it (every process of a fleet reads them from its own environment).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from celery import Celery

from runqueue import validation
from runqueue.celery.app import create_app
from runqueue.errors import InvalidAssistantNameError, ProjectConfigError, describe
from runqueue.langgraph.assistant import GraphTask, langgraph_assistant
from runqueue.settings import ENV_PREFIX, Settings

logger = logging.getLogger(__name__)

JAVASCRIPT_SUFFIXES = (".js", ".mjs", ".cjs", ".ts", ".mts", ".cts", ".tsx", ".jsx")
# Keys with a meaning at run time that runqueue does not apply (its own API keys, HTTP
# server and checkpointer serve instead): said once, as a warning, not silently dropped.
NOT_APPLIED = ("auth", "http", "store", "checkpointer", "webhooks", "ui", "encryption")


@dataclass(frozen=True)
class GraphEntry:
    """One `graphs` entry: the assistant's name and where its graph is."""

    name: str
    source: str  # as written: "./src/agent/graph.py:graph" or "agent.graph:graph"
    description: str | None = None

    @property
    def key(self) -> str:
        return f"graphs.{self.name}"

    def location(self) -> tuple[str, str]:
        """(file path or module, variable); the variable may be "" (the module's graph)."""
        where, _, variable = self.source.rpartition(":")
        return where, variable

    @property
    def is_file(self) -> bool:
        where = self.location()[0]
        return "/" in where or where.endswith(".py")


@dataclass(frozen=True)
class Project:
    """A langgraph.json, read and checked; nothing imported yet."""

    path: Path  # the langgraph.json, absolute
    graphs: tuple[GraphEntry, ...]
    import_paths: tuple[Path, ...]  # the file's folder, then its path dependencies
    env: dict[str, str] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return self.path.parent

    def error(self, message: str, entry: str = "") -> ProjectConfigError:
        where = f"{self.path}: {entry}: " if entry else f"{self.path}: "
        return ProjectConfigError(where + message, path=str(self.path), entry=entry)


def read_project(path: str | os.PathLike[str]) -> Project:
    """The langgraph.json at `path`, checked (ProjectConfigError naming the entry at fault)."""
    config_path = Path(path).expanduser().resolve()
    blank = Project(path=config_path, graphs=(), import_paths=())
    try:
        data = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise blank.error("no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise blank.error(f"cannot read it as JSON: {describe(exc)}") from None
    except RecursionError:  # the decoder gives up on nesting this deep (validation.parse_json)
        raise blank.error("cannot read it as JSON: it nests too deep to decode") from None
    if not isinstance(data, dict):
        raise blank.error("must be a JSON object")
    for key in sorted(set(data) - {"graphs", "dependencies", "env"}):
        if key in NOT_APPLIED:
            logger.warning("%s: %r is not applied by runqueue (ignored)", config_path, key)
        else:
            logger.debug("%s: %r ignored", config_path, key)
    return Project(
        path=config_path,
        graphs=_graphs(blank, data.get("graphs")),
        import_paths=(config_path.parent, *_import_paths(blank, data.get("dependencies"))),
        env=_env(blank, data.get("env")),
    )


def _graphs(project: Project, graphs: Any) -> tuple[GraphEntry, ...]:
    if not isinstance(graphs, dict) or not graphs:
        raise project.error('needs "graphs", an object of graph names and where they are')
    entries = []
    for name, value in graphs.items():
        key = f"graphs.{name}"
        spec = value.get("path") if isinstance(value, dict) else value
        description = value.get("description") if isinstance(value, dict) else None
        if not isinstance(spec, str) or ":" not in spec:
            raise project.error(
                'must be "./file.py:variable" or "package.module:variable" (or an object '
                'with that as its "path")',
                key,
            )
        if description is not None and not isinstance(description, str):
            raise project.error("description must be a string", key)
        entry = GraphEntry(name=name, source=spec, description=description)
        where = entry.location()[0]
        if where.endswith(JAVASCRIPT_SUFFIXES):
            raise project.error("JavaScript graphs are not supported", key)
        if entry.is_file and not (project.folder / where).is_file():
            raise project.error(f"no such file {project.folder / where}", key)
        try:
            validation.assistant_name(name)
        except InvalidAssistantNameError as exc:
            raise project.error(str(exc), key) from None
        entries.append(entry)
    return tuple(entries)


def _import_paths(project: Project, dependencies: Any) -> list[Path]:
    if dependencies is None:
        return []
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise project.error("must be a list of paths and package names", "dependencies")
    paths = []
    for dependency in dependencies:
        if not dependency.startswith((".", "/")):  # a package: pip installs it, not us
            logger.debug("%s: dependency %r is a package (ignored)", project.path, dependency)
            continue
        folder = (project.folder / dependency).resolve()
        if not folder.is_dir():
            raise project.error(f"no such folder {folder}", f"dependencies {dependency!r}")
        paths.append(folder)
    return paths


def _env(project: Project, env: Any) -> dict[str, str]:
    if env is None:
        return {}
    if isinstance(env, dict):
        bad = next((k for k, v in env.items() if not isinstance(v, str)), None)
        if bad is not None:
            raise project.error("values must be strings", f"env.{bad}")
        return dict(env)
    if not isinstance(env, str):
        raise project.error("must be a .env file's path or an object of strings", "env")
    env_file = project.folder / env
    if not env_file.is_file():  # as `langgraph dev`: a template's .env may not be made yet
        logger.warning("%s: env file %s not found (no variables set)", project.path, env_file)
        return {}
    try:
        return read_env_file(env_file)
    except (OSError, UnicodeDecodeError) as exc:
        raise project.error(f"cannot read {env_file}: {describe(exc)}", "env") from None


def read_env_file(path: Path) -> dict[str, str]:
    """A .env file's variables: python-dotenv's reading when it is installed, else ours."""
    try:
        from dotenv import dotenv_values
    except ImportError:
        return parse_env(path.read_text(encoding="utf-8"))
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def parse_env(text: str) -> dict[str, str]:
    """KEY=value lines (`export ` allowed, quotes stripped, # comments): the common .env."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or key.startswith("#"):
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def apply_project(project: Project) -> None:
    """The project's environment (what is already set wins) and import path."""
    for name, value in project.env.items():
        if name.startswith(ENV_PREFIX):
            logger.warning(
                "%s: env %s ignored: runqueue settings come from the process environment",
                project.path,
                name,
            )
            continue
        os.environ.setdefault(name, value)
    # In front, in the file's order: a project's module is never shadowed by an installed
    # package (or a file in the current folder) of the same name.
    for position, folder in enumerate(project.import_paths):
        if str(folder) in sys.path:
            sys.path.remove(str(folder))
        sys.path.insert(position, str(folder))


def load_graph(project: Project, entry: GraphEntry) -> Any:
    """The entry's compiled graph (a StateGraph compiled) or factory (returned as it is)."""
    from langgraph.graph import StateGraph
    from langgraph.pregel import Pregel

    where, variable = entry.location()
    try:
        module = _import(project, entry)
    except Exception as exc:  # noqa: BLE001 - the user's module: any error, named
        raise project.error(f"cannot import {where}: {describe(exc)}", entry.key) from exc
    if variable:
        if variable not in module.__dict__:
            raise project.error(f"{where} has no {variable!r}", entry.key)
        graph = module.__dict__[variable]
    else:  # as `langgraph dev`: the module's compiled graph, else its StateGraph
        members = [member for _, member in inspect.getmembers(module)]
        found = [m for m in members if isinstance(m, Pregel)]
        found = found or [m for m in members if isinstance(m, StateGraph)]
        if not found:
            raise project.error(f"{where} has no graph", entry.key)
        graph = found[0]
    if isinstance(graph, StateGraph):
        return graph.compile()
    if isinstance(graph, Pregel) or (callable(graph) and not isinstance(graph, type)):
        return graph
    raise project.error(
        f"{entry.source} is a {type(graph).__name__}, not a compiled graph, a StateGraph or a "
        "function that returns one",
        entry.key,
    )


def _import(project: Project, entry: GraphEntry) -> ModuleType:
    """The entry's module; a file under the name `langgraph dev` gives it (its path with /
    as __), executed once per process as an import is."""
    where = entry.location()[0]
    if not entry.is_file:
        return importlib.import_module(where)
    file = (project.folder / where).resolve()
    name = where.replace("/", "__").replace(".py", "").replace(" ", "_").lstrip(".")
    loaded = sys.modules.get(name)
    if loaded is not None and getattr(loaded, "__file__", None) == str(file):
        return loaded
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"not a Python file: {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def load_project(path: str | os.PathLike[str]) -> list[tuple[GraphEntry, Any]]:
    """Each graph of the langgraph.json at `path`, imported (its env and import path set):
    what a process checks before it starts, so that a bad entry is one error at once."""
    project = read_project(path)
    apply_project(project)
    return [(entry, load_graph(project, entry)) for entry in project.graphs]


def register_project(app: Celery, path: str | os.PathLike[str]) -> list[GraphTask]:
    """Register every graph of the langgraph.json at `path` on `app` (made by create_app)."""
    tasks = [
        langgraph_assistant(app, entry.name, graph, description=entry.description)
        for entry, graph in load_project(path)
    ]
    logger.info("%s: %d graphs: %s", path, len(tasks), ", ".join(t.name for t in tasks))
    return tasks


def project_app(settings: Settings) -> Celery:
    """runqueue's app for these settings, serving the graphs of their langgraph.json."""
    app = create_app(settings)
    register_project(app, settings.config)
    return app
