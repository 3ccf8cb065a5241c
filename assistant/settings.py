"""App-wide settings with typed defaults, kept in the store (scope "app").

Plain dataclasses; load and save on any worker thread (the store serialises).
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.settings import EngineSettings, SamplingParams

#: The local API server's bearer token lives in this file of the data folder (mode 0600).
API_TOKEN_FILE = "api_token"
#: Theme and font size, readable before the database is unlocked (see :func:`saved_appearance`).
APPEARANCE_FILE = "appearance.json"
#: The longest idle time the Settings page offers before the window locks itself (a day).
MAX_AUTO_LOCK_MINUTES = 24 * 60


@dataclass
class AppSettings:
    # Engine: threads, context length, flash attention (see EngineSettings for each default).
    engine: EngineSettings = field(default_factory=EngineSettings)
    # Sampling every new conversation starts from.
    sampling: SamplingParams = field(default_factory=SamplingParams)
    # "system" follows the desktop's light or dark preference.
    theme: str = "system"
    # Points; 0 keeps the desktop's font size.
    font_size: int = 0
    # Grey inline next-word suggestions in the composer and the translate box.
    suggestions_enabled: bool = True
    # The system prompt of new conversations; empty uses the model's own default.
    default_system_prompt: str = ""
    # The local OpenAI-compatible API (Settings switch): off until the user turns it on.
    api_server_enabled: bool = False
    # Its port on 127.0.0.1; 8642 is clear of the usual local model servers (Ollama 11434,
    # llama.cpp 8080, LM Studio 1234).
    api_server_port: int = 8642
    # Lock the window after this many minutes without keyboard or mouse input to the app; 0 never
    # locks on its own. 15 minutes: the lock is for the screen left unattended (the desk, a shared
    # office), and unlocking costs one key press with a keyring (a passphrase otherwise), while a
    # reply being written or a running job holds it off, so nothing the user waits for is stopped.
    auto_lock_minutes: int = 15

    @classmethod
    def load(cls, store) -> "AppSettings":
        data = store.get_setting("app", "AppSettings", {}) or {}
        return cls(
            engine=EngineSettings.from_dict(data.get("engine")),
            sampling=SamplingParams.from_dict(data.get("sampling")),
            theme=str(data.get("theme", cls.theme)),
            font_size=int(data.get("font_size", cls.font_size)),
            suggestions_enabled=bool(data.get("suggestions_enabled", cls.suggestions_enabled)),
            default_system_prompt=str(data.get("default_system_prompt", cls.default_system_prompt)),
            api_server_enabled=bool(data.get("api_server_enabled", cls.api_server_enabled)),
            api_server_port=int(data.get("api_server_port", cls.api_server_port)),
            auto_lock_minutes=int(data.get("auto_lock_minutes", cls.auto_lock_minutes)),
        )

    def to_dict(self) -> dict:
        return asdict(self)


def apply_settings_and_restart_engine(services, values: dict) -> bool:
    """Store the Settings page's values, then restart the engine worker with them (worker
    thread: the store, then a process restart). False when no engine was running."""
    apply_settings(services, values)
    return services.restart_engine()


def appearance_path(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / APPEARANCE_FILE


def save_appearance(data_dir: str | os.PathLike, settings: "AppSettings") -> None:
    """Keep the theme and font size beside the database, unencrypted (worker thread, on save).

    The window needs them before its first paint, which comes before the database is unlocked;
    a theme name and a point size say nothing about what the user wrote."""
    from engine.atomic import write_json_atomic

    write_json_atomic(appearance_path(data_dir), {"theme": settings.theme, "font_size": settings.font_size})


def saved_appearance(data_dir: str | os.PathLike) -> tuple[str, int]:
    """The saved theme and font size from the appearance file; ("system", 0) when there is none
    yet or it cannot be read. Main thread, at start, before the first paint."""
    import json

    try:
        data = json.loads(appearance_path(data_dir).read_text(encoding="utf-8"))
        return str(data.get("theme", AppSettings.theme)), int(data.get("font_size", AppSettings.font_size))
    except (OSError, ValueError, TypeError, AttributeError):
        return AppSettings.theme, AppSettings.font_size


def api_token_path(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / API_TOKEN_FILE


def load_or_create_api_token(data_dir: str | os.PathLike, rotate: bool = False) -> str:
    """The API server's bearer token, generated on first use (or with ``rotate``).

    Any thread. Written atomically; the temp file is created 0600 (mkstemp), so the token
    is never readable by other users, not even for a moment. A token file that has
    become readable by others is tightened back to 0600.
    """
    from engine.atomic import atomic_write_text

    path = api_token_path(data_dir)
    if not rotate:
        try:
            token = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            token = ""
        if token:
            if stat.S_IMODE(path.stat().st_mode) & 0o077:
                os.chmod(path, 0o600)
            return token
    token = secrets.token_urlsafe(32)
    atomic_write_text(path, token + "\n")
    os.chmod(path, 0o600)  # mkstemp already made it 0600; say so explicitly for other umasks
    return token


def apply_settings(services, values: dict) -> None:
    """Validate and store the Settings page's values (worker thread: the store); raises
    SettingsError with the reason, changing nothing, when one is out of range."""
    from assistant.errors import SettingsError

    current = services.settings.to_dict()
    try:
        engine = EngineSettings.from_dict({**current["engine"], **values.get("engine", {})})
        sampling = SamplingParams.from_dict({**current["sampling"], **values.get("sampling", {})})  # validates
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc
    if int(engine.n_threads) < 1 or int(engine.n_ctx) < 256:
        raise SettingsError("Threads must be at least 1 and the context at least 256 tokens.")
    rest = {k: v for k, v in values.items() if k not in ("engine", "sampling")}
    if "auto_lock_minutes" in rest and not 0 <= int(rest["auto_lock_minutes"]) <= MAX_AUTO_LOCK_MINUTES:
        raise SettingsError(f"Lock after 0 (never) to {MAX_AUTO_LOCK_MINUTES} minutes without use.")
    names = ("theme", "font_size", "suggestions_enabled", "default_system_prompt", "auto_lock_minutes")
    fresh = AppSettings(engine=engine, sampling=sampling, **{k: rest.get(k, current[k]) for k in names})
    # Update in place: the engine client holds this same EngineSettings object, so the new
    # threads and context apply the next time the worker starts.
    for name, value in vars(fresh.engine).items():
        setattr(services.settings.engine, name, value)
    services.settings.sampling = fresh.sampling
    for name in names:
        setattr(services.settings, name, getattr(fresh, name))
    services.save_settings()
