"""Data files shipped with the app: icons, style sheets, prompt and fallback chat templates."""

from pathlib import Path

RESOURCES_DIR = Path(__file__).resolve().parent


def path(*parts: str) -> Path:
    return RESOURCES_DIR.joinpath(*parts)


#: The documents the Help menu shows, by name: where each lives in the source tree (relative
#: to the repository root). They are written for the repository (GitHub renders them) and kept
#: there; the wheel (setup.py's build_py) and the bundle (packaging/assistant.spec) copy them,
#: with the guide's pictures, into resources/help/, where an installed app finds them.
HELP_SOURCES = {
    "user-guide.md": "docs/user-guide.md",
    "PRIVACY.md": "PRIVACY.md",
}
#: The guide's pictures (relative links "images/x.png"), shipped beside it.
HELP_IMAGES = "docs/images"
HELP_DIR = RESOURCES_DIR / "help"


def help_file(name: str) -> Path:
    """A Help document: the shipped copy in an installed app or the bundle, else the source
    tree's own file (running from a checkout, where nothing was copied)."""
    if name not in HELP_SOURCES:
        raise KeyError(name)
    shipped = HELP_DIR / name
    if shipped.is_file():
        return shipped
    return RESOURCES_DIR.parent / HELP_SOURCES[name]
