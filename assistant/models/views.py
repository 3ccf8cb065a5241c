"""The model library as the Models page shows it, and the changes it makes. Worker threads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from assistant.errors import LibraryError

if TYPE_CHECKING:
    from assistant.app import Services
    from assistant.models.library import ModelRecord


@dataclass
class LibraryView:
    models: list  # every ModelRecord
    routes: dict  # task -> model id the user chose
    effective: dict  # task -> model id that serves it now (None if none can)
    tasks: tuple


@dataclass
class ImportOutcome:
    added: list  # ModelRecord objects
    errors: list  # one clear message per refused file


def library_view(services: "Services") -> LibraryView:
    from assistant.models.library import TASKS

    effective = {}
    for task in TASKS:
        try:
            effective[task] = services.library.for_task(task).id
        except LibraryError:
            effective[task] = None
    return LibraryView(services.library.list(), services.library.routes(), effective, tuple(TASKS))


def import_models(services: "Services", paths: Iterable[str]) -> ImportOutcome:
    """Add each file; a refused file leaves the library unchanged and gives one message."""
    outcome = ImportOutcome([], [])
    for path in paths:
        try:
            outcome.added.append(services.library.add(path, n_ctx=services.settings.engine.n_ctx))
        except LibraryError as exc:
            outcome.errors.append(str(exc))
    return outcome


def remove_model(services: "Services", model_id: str, delete_file: bool, confirmed: bool) -> "ModelRecord":
    return services.library.remove(model_id, delete_file=delete_file, confirmed=confirmed)


def set_route(services: "Services", task: str, model_id: str | None) -> LibraryView:
    services.library.set_route(task, model_id)
    return library_view(services)


@dataclass
class DiscoveryView:
    found: list  # discovery.FoundModel, each with the library id it is linked as (or None)
    linked: dict  # FoundModel.path -> model id already in the library
    skipped: list  # one line per file or folder passed over, and why
    searched: list  # discovery.Location that exist


def discover_models(services: "Services") -> DiscoveryView:
    """Look through the other tools' folders and the user's own (reads only file headers)."""
    from assistant.models.discovery import default_locations, discover

    result = discover(default_locations(user_folders=services.library.model_folders()))
    by_path = {m.path: m.id for m in services.library.list()}
    linked = {f.path: by_path[f.path] for f in result.found if f.path in by_path}
    return DiscoveryView(result.found, linked, [str(s) for s in result.skipped], result.searched)


def link_models(services: "Services", found: Iterable) -> ImportOutcome:
    """Link each found model in place; a refused one gives one message and links nothing."""
    outcome = ImportOutcome([], [])
    for model in found:
        try:
            outcome.added.append(services.library.link(model.path, model.source, model.name,
                                                       n_ctx=services.settings.engine.n_ctx))
        except LibraryError as exc:
            outcome.errors.append(str(exc))
    return outcome


def locate_model(services: "Services", model_id: str, path: str) -> "ModelRecord":
    return services.library.locate(model_id, path, n_ctx=services.settings.engine.n_ctx)


def add_model_folder(services: "Services", folder: str) -> DiscoveryView:
    services.library.add_model_folder(folder)
    return discover_models(services)
