#!/usr/bin/env bash
# Installs the unpacked bundle for this user (no root): the program, its menu entry, icon,
# AppStream metadata and the .gguf file type ("Open with Local Assistant").
#
#   ./install.sh                 from inside the unpacked bundle folder
#   ./install.sh --uninstall     takes it all out again (your library and models stay)
#
# Where: the bundle to $XDG_DATA_HOME/local-assistant/bundle (default ~/.local/share/...),
# the command to ~/.local/bin/local-assistant, the desktop files under $XDG_DATA_HOME.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DATA="${XDG_DATA_HOME:-$HOME/.local/share}"
BIN="${LOCAL_ASSISTANT_BIN_DIR:-$HOME/.local/bin}"
TARGET="$DATA/local-assistant/bundle"
ID=io.github.local_assistant.LocalAssistant

refresh() {
    # Each cache is optional: desktops without it still read the files, only later.
    command -v update-mime-database >/dev/null && update-mime-database "$DATA/mime" >/dev/null 2>&1 || true
    command -v update-desktop-database >/dev/null && update-desktop-database "$DATA/applications" >/dev/null 2>&1 || true
    command -v gtk-update-icon-cache >/dev/null && gtk-update-icon-cache -qtf "$DATA/icons/hicolor" >/dev/null 2>&1 || true
}

if [ "${1:-}" = "--uninstall" ]; then
    rm -f "$BIN/local-assistant" "$DATA/applications/$ID.desktop" "$DATA/metainfo/$ID.metainfo.xml" \
        "$DATA/mime/packages/local-assistant-gguf.xml"
    find "$DATA/icons/hicolor" -name "$ID.*" -delete 2>/dev/null || true
    rm -rf "$TARGET"
    refresh
    echo "Local Assistant was removed. Your conversations and models are still in $DATA/local-assistant."
    exit 0
fi

if [ ! -x "$HERE/local-assistant" ]; then
    echo "Run this script from inside the unpacked bundle (the folder with the local-assistant program)." >&2
    exit 1
fi

mkdir -p "$TARGET" "$BIN"
if [ "$HERE" != "$TARGET" ]; then
    # Into a fresh folder, then swapped in: an interrupted install leaves the old one working.
    rm -rf "$TARGET.new"
    cp -a "$HERE" "$TARGET.new"
    rm -rf "$TARGET"
    mv "$TARGET.new" "$TARGET"
fi
ln -sfn "$TARGET/local-assistant" "$BIN/local-assistant"
( cd "$TARGET/share" && find . -type f ) | while read -r file; do
    install -Dm644 "$TARGET/share/$file" "$DATA/$file"
done
# The menu entry runs the command by its full path: ~/.local/bin is not on every desktop's PATH.
sed -i "s|^Exec=local-assistant|Exec=$TARGET/local-assistant|; s|^TryExec=local-assistant|TryExec=$TARGET/local-assistant|" \
    "$DATA/applications/$ID.desktop"
refresh
echo "Installed: $BIN/local-assistant, and Local Assistant in your applications menu."
