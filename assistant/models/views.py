"""The model library as the Models page shows it, and the changes it makes. Worker threads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

from assistant.errors import LibraryError

if TYPE_CHECKING:
    from assistant.app import Services
    from assistant.models.fit import Fit
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


def model_fits(services: "Services") -> dict[str, "Fit"]:
    """How each GGUF model of the library fits this machine at the configured context, by model
    id (missing files have none). The first call for a data folder measures the memory
    bandwidth (under a second)."""
    from assistant.models import fit

    machine = fit.this_machine(services.paths.data_dir)
    return {record.id: _record_fit(services, record, machine)
            for record in services.library.list() if record.is_gguf and not record.missing}


def model_fit(services: "Services", model_id: str) -> tuple["ModelRecord", "Fit | None"]:
    """One model and its fit (None for a missing file or a model that is not GGUF), to ask
    before a model that does not fit is chosen for a task."""
    from assistant.models import fit

    record = services.library.get(model_id)
    if not record.is_gguf or record.missing:
        return record, None
    return record, _record_fit(services, record, fit.this_machine(services.paths.data_dir))


def _record_fit(services: "Services", record: "ModelRecord", machine) -> "Fit":
    """From the metadata stored at import; when it lacks the KV figure or the vocabulary's size
    (an older record, a file without them), from the header again (a few KB)."""
    from assistant.models import fit
    from engine.gguf_check import MalformedModelError

    shape = fit.ModelShape.from_metadata(record.metadata, record.size_bytes)
    if not shape.kv_bytes_per_token or not shape.n_vocab:
        try:
            shape = fit.read_shape(record.path, record.size_bytes)
        except MalformedModelError:
            pass
    from assistant.models import model_settings

    engine = services.settings.engine
    # At the context the model loads with: its own (Settings… on the Models page), else the app's.
    n_ctx = model_settings.load(services.store, record.id).n_ctx or engine.n_ctx
    return fit.assess(shape, n_ctx, machine.free_bytes, machine.bandwidth, engine.n_batch)


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
    fits: dict = field(default_factory=dict)  # FoundModel.path -> fit.Fit on this machine


def discover_models(services: "Services") -> DiscoveryView:
    """Look through the other tools' folders and the user's own (reads only file headers), and
    say how each model found fits this machine."""
    from assistant.models import fit
    from assistant.models.discovery import default_locations, discover
    from engine.gguf_check import MalformedModelError

    result = discover(default_locations(user_folders=services.library.model_folders()))
    by_path = {m.path: m.id for m in services.library.list()}
    linked = {f.path: by_path[f.path] for f in result.found if f.path in by_path}
    fits = {}
    if result.found:
        machine = fit.this_machine(services.paths.data_dir)
        engine = services.settings.engine
        for found in result.found:
            try:
                shape = fit.read_shape(found.path, found.size_bytes)
            except MalformedModelError:
                continue  # changed since discovery peeked at it: no label rather than a wrong one
            fits[found.path] = fit.assess(shape, engine.n_ctx, machine.free_bytes, machine.bandwidth, engine.n_batch)
    return DiscoveryView(result.found, linked, [str(s) for s in result.skipped], result.searched, fits)


def link_models(services: "Services", found: Iterable) -> ImportOutcome:
    """Link each found model in place; a refused one gives one message and links nothing."""
    from assistant.models import model_settings
    from assistant.models.discovery import read_ollama_context, read_ollama_params

    outcome = ImportOutcome([], [])
    for model in found:
        try:
            # An Ollama model's Modelfile parameters become its recommended sampling.
            params = read_ollama_params(model.params_path) if model.params_path else None
            record = services.library.link(model.path, model.source, model.name,
                                           n_ctx=services.settings.engine.n_ctx, recommended_sampling=params)
        except LibraryError as exc:
            outcome.errors.append(str(exc))
            continue
        outcome.added.append(record)
        # ... and its num_ctx its context length, when this link made the record (a file already
        # in the library under another name keeps its settings).
        context = read_ollama_context(model.params_path) if model.params_path else None
        if context and (record.linked_from, record.link_name) == (model.source, model.name):
            model_settings.adopt_context(services.store, record, context)
    return outcome


def locate_model(services: "Services", model_id: str, path: str) -> "ModelRecord":
    return services.library.locate(model_id, path, n_ctx=services.settings.engine.n_ctx)


def add_model_folder(services: "Services", folder: str) -> DiscoveryView:
    services.library.add_model_folder(folder)
    return discover_models(services)
