"""Data files shipped with the app: icons, style sheets, prompt and fallback chat templates."""

from pathlib import Path

RESOURCES_DIR = Path(__file__).resolve().parent


def path(*parts: str) -> Path:
    return RESOURCES_DIR.joinpath(*parts)
