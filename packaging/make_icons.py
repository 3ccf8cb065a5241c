"""Renders the app icon (resources/icons/app.svg) to the PNG sizes desktops look for.

Usage: QT_QPA_PLATFORM=offscreen python packaging/make_icons.py [OUT_DIR]
Writes OUT_DIR/hicolor/<N>x<N>/apps/local-assistant.png for each size in SIZES
(default OUT_DIR: resources/icons), laid out as the freedesktop icon theme spec wants, so
that an installer copies the tree to /usr/share/icons or ~/.local/share/icons as it is.

Qt's own SVG renderer (QSvgRenderer) draws the pictures: no extra tool, and the same
renderer that draws the icon in the window. PNGs are written atomically (temp file in the
same folder, then os.replace). Runs on the main thread of its own process, at build time.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "resources" / "icons" / "app.svg"
#: The icon theme name: the desktop entry's id (ui.app.DESKTOP_ID), as Flatpak and AppStream want.
ICON_NAME = "io.github.local_assistant.LocalAssistant"
#: The sizes of the hicolor theme that desktops and app stores ask for.
SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)


def render(svg: Path, size: int):
    """The icon as a size x size QImage with a transparent background."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg} is not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    return image


def _save_atomic(image, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".png", dir=target.parent)
    os.close(fd)
    try:
        if not image.save(tmp, "PNG"):
            raise SystemExit(f"could not write {target}")
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_icons(out_dir: Path, svg: Path = SOURCE) -> list[Path]:
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 (QImage needs it)
    written = []
    for size in SIZES:
        target = out_dir / "hicolor" / f"{size}x{size}" / "apps" / f"{ICON_NAME}.png"
        _save_atomic(render(svg, size), target)
        written.append(target)
    return written


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else ROOT / "resources" / "icons"
    for path in make_icons(out):
        print(path.relative_to(out) if path.is_relative_to(out) else path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
