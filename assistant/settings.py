"""App-wide settings with typed defaults, kept in the store (scope "app").

Plain dataclasses; load and save on any worker thread (the store serialises).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from engine.settings import EngineSettings, SamplingParams


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
        )

    def to_dict(self) -> dict:
        return asdict(self)
