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
