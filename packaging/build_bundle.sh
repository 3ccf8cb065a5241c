#!/usr/bin/env bash
# Builds the self-contained Linux bundle: dist/local-assistant/ and dist/local-assistant-linux-x86_64.tar.gz.
#
#   packaging/build_bundle.sh            (or `make package`)
#   LOCAL_ASSISTANT_BUNDLE_MODELS=0 ...  a bundle without the default model pack (~400 MB smaller)
#
# Needs the project's virtualenv (`make setup`); installs PyInstaller into it if missing.
# torch, transformers and peft are left out (see packaging/assistant.spec): the bundle chats,
# translates and reads documents; training runs from the virtualenv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PY:-$ROOT/.venv/bin/python}"
DIST="$ROOT/dist"
WORK="$ROOT/build/pyinstaller"

if [ ! -x "$PY" ]; then
    echo "No virtualenv at $PY: run 'make setup' first." >&2
    exit 1
fi
if ! "$PY" -c "import PyInstaller" 2>/dev/null; then
    echo "Installing PyInstaller into the virtualenv"
    "$PY" -m pip install --quiet "pyinstaller>=6.10"
fi

# The icon set is generated from the SVG (Qt's renderer); the desktop files reference it.
QT_QPA_PLATFORM=offscreen "$PY" packaging/make_icons.py

start=$(date +%s)
"$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath "$DIST" --workpath "$WORK" packaging/assistant.spec
BUNDLE="$DIST/local-assistant"

# Desktop integration files inside the bundle, laid out as under /usr (share/...), so that
# `packaging/install_bundle.sh` or a distribution package can copy them as they are.
SHARE="$BUNDLE/share"
ID=io.github.local_assistant.LocalAssistant
install -Dm644 "packaging/$ID.desktop" "$SHARE/applications/$ID.desktop"
install -Dm644 "packaging/$ID.metainfo.xml" "$SHARE/metainfo/$ID.metainfo.xml"
install -Dm644 packaging/local-assistant-gguf.xml "$SHARE/mime/packages/local-assistant-gguf.xml"
install -Dm644 resources/icons/app.svg "$SHARE/icons/hicolor/scalable/apps/$ID.svg"
for png in resources/icons/hicolor/*/apps/"$ID".png; do
    size="$(basename "$(dirname "$(dirname "$png")")")"
    install -Dm644 "$png" "$SHARE/icons/hicolor/$size/apps/$ID.png"
done
install -Dm755 packaging/install_bundle.sh "$BUNDLE/install.sh"

tar -C "$DIST" -czf "$DIST/local-assistant-linux-x86_64.tar.gz" local-assistant
end=$(date +%s)
echo "bundle: $BUNDLE ($(du -sh "$BUNDLE" | cut -f1), archive $(du -sh "$DIST/local-assistant-linux-x86_64.tar.gz" | cut -f1)), built in $((end - start)) s"
