#!/usr/bin/env bash
# Starts the built bundle (dist/local-assistant) on a virtual X server and checks it works:
#
#   1. the window appears (time from start to the window being on screen is printed);
#   2. the engine worker runs as the bundle's own program (`local-assistant -m engine.worker`);
#   3. a screenshot of the screen is kept: artifacts/bundle/window.png;
#   4. "Open with": a second launch with a .gguf exits at once and the first window imports it
#      (checked with the bundle's own CLI), screenshot artifacts/bundle/open-with.png;
#   5. SIGTERM closes the window cleanly and the engine worker is gone;
#   6. install.sh installs it for one user (in a temporary home) and --uninstall removes it;
#   then the window's start time from the virtualenv is measured the same way, as a baseline.
#
# Needs Xvfb and xwininfo (`make system-deps`) and the virtualenv's Python for the screenshot
# (another X client grabbing the screen) and for writing a small test model. A fresh data
# folder is used: the first start joins the default pack's Gemma parts, as for a new user.
# Ends with one JSON line of figures.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
BUNDLE="${BUNDLE:-$ROOT/dist/local-assistant}"
BIN="$BUNDLE/local-assistant"
OUT="$ROOT/artifacts/bundle"
WAIT_S="${WAIT_S:-180}"  # longest wait for each step on a slow, shared machine

fail() { echo "test_bundle: FAILED: $*" >&2; [ -f "${WORK:-/nonexistent}/app.log" ] && tail -30 "$WORK/app.log" >&2; exit 1; }
[ -x "$BIN" ] || fail "no bundle at $BUNDLE: run packaging/build_bundle.sh (make package) first"
command -v Xvfb >/dev/null || fail "Xvfb is not installed: make system-deps"
command -v xwininfo >/dev/null || fail "xwininfo is not installed: make system-deps (x11-utils)"

WORK="$(mktemp -d)"
XVFB_PID=""
APP_PID=""
cleanup() {
    [ -n "$APP_PID" ] && kill "$APP_PID" 2>/dev/null || true
    [ -n "$XVFB_PID" ] && kill "$XVFB_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$OUT"
export ASSISTANT_DATA_DIR="$WORK/data"
# Where there is no keyring (a test machine; the tests' file keyring is not in the bundle) the
# window would wait for a passphrase to be chosen: the app takes this one once instead.
export ASSISTANT_PASSPHRASE="bundle start test (data thrown away)"

Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp -noreset 3>"$WORK/display" >/dev/null 2>&1 &
XVFB_PID=$!
for _ in $(seq 100); do [ -s "$WORK/display" ] && break; sleep 0.1; done
[ -s "$WORK/display" ] || fail "Xvfb did not start"
export DISPLAY=":$(head -n1 "$WORK/display")"
export QT_QPA_PLATFORM=xcb

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
wait_for() {  # wait_for DESCRIPTION COMMAND...: until the command succeeds, the app is alive, or WAIT_S
    local what="$1" deadline=$((SECONDS + WAIT_S)); shift
    until "$@" >/dev/null 2>&1; do
        [ -z "$APP_PID" ] || kill -0 "$APP_PID" 2>/dev/null || fail "the app exited while waiting for $what"
        [ $SECONDS -lt $deadline ] || fail "timed out waiting for $what"
        sleep 0.1
    done
}
window_shown() { xwininfo -root -tree | grep -q '"Local Assistant": ("'; }
worker_running() { pgrep -P "$APP_PID" -f -- "-m engine.worker" >/dev/null; }
shot() {  # shot FILE: the window's pixels as on the screen, refused if blank
    local geometry
    local id
    # The main window: the one with a WM_CLASS (Qt also makes 1x1 helper windows with the same title).
    id="$(xwininfo -root -tree | awk '/"Local Assistant": \("/ {print $1; exit}')"
    geometry="$(xwininfo -id "$id" | awk '/Absolute upper-left X/ {x=$NF} /Absolute upper-left Y/ {y=$NF}
        /Width:/ {w=$NF} /Height:/ {h=$NF} END {print x, y, w, h}')"
    "$PY" - "$1" $geometry <<'EOF'
import sys
from PySide6.QtGui import QGuiApplication
app = QGuiApplication(sys.argv[:1])
x, y, w, h = (int(v) for v in sys.argv[2:6])
picture = app.primaryScreen().grabWindow(0, x, y, w, h)
image = picture.toImage()
colours = {image.pixel(x, y) for x in range(0, image.width(), 17) for y in range(0, image.height(), 13)}
if len(colours) < 8:
    sys.exit(f"the screen is blank ({len(colours)} colours)")
if not picture.save(sys.argv[1]):
    sys.exit(f"could not save {sys.argv[1]}")
EOF
}

# 1-3: start, window, engine worker, screenshot
start="$(now)"
"$BIN" >"$WORK/app.log" 2>&1 &
APP_PID=$!
wait_for "the window" window_shown
window_s="$(elapsed "$start")"
echo "window on screen after ${window_s} s"
wait_for "the engine worker" worker_running
worker_s="$(elapsed "$start")"
worker_cmd="$(pgrep -a -P "$APP_PID" -f -- "-m engine.worker" | head -n1 | cut -c1-160)"
case "$worker_cmd" in
    *"$BIN -m engine.worker"*) ;;
    *) fail "the engine worker is not the bundle's program: $worker_cmd" ;;
esac
echo "engine worker running after ${worker_s} s: ${worker_cmd%% --settings*}"
sleep 3  # the status bar and the chat list settle
shot "$OUT/window.png" || fail "screenshot"

# 4: "Open with" on a running window
"$PY" -c "import sys; sys.path.insert(0, '$ROOT'); from tests.engine.gguf_corpus import write_valid_gguf; write_valid_gguf('$WORK/opened.gguf', name='Opened With')"
second_start="$(now)"
"$BIN" "$WORK/opened.gguf" >"$WORK/second.log" 2>&1 || fail "the second launch failed: $(cat "$WORK/second.log")"
second_s="$(elapsed "$second_start")"
grep -q "already open" "$WORK/second.log" || fail "the second launch did not find the first: $(cat "$WORK/second.log")"
echo "second launch handed its file over and exited after ${second_s} s"
imported() { "$BIN" models list 2>/dev/null | grep -q "opened-with"; }
wait_for "the handed-over model in the library" imported
sleep 2
shot "$OUT/open-with.png" || fail "screenshot"

# 5: SIGTERM closes the window as Quit does
worker_pid="$(pgrep -P "$APP_PID" -f -- "-m engine.worker" | head -n1)"
kill -TERM "$APP_PID"
deadline=$((SECONDS + 60))
while kill -0 "$APP_PID" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || fail "the app did not close on SIGTERM"
    sleep 0.1
done
set +e; wait "$APP_PID"; code=$?; set -e
APP_PID=""
[ "$code" -eq 0 ] || fail "the app exited with $code on SIGTERM"
! kill -0 "$worker_pid" 2>/dev/null || fail "the engine worker $worker_pid is still running after the app closed"
echo "closed cleanly on SIGTERM; the engine worker is gone"

# Baseline, same machine, same moment: the window from the virtualenv (`assistant`), fresh library.
export ASSISTANT_DATA_DIR="$WORK/data-venv"
start="$(now)"
"$PY" -c "import sys; sys.path.insert(0, '$ROOT'); from ui.launcher import main; sys.exit(main())" >"$WORK/app.log" 2>&1 &
APP_PID=$!
wait_for "the virtualenv's window" window_shown
venv_window_s="$(elapsed "$start")"
kill -TERM "$APP_PID"; wait "$APP_PID" || true; APP_PID=""
echo "baseline: the virtualenv's window on screen after ${venv_window_s} s"

# Training is left out of the bundle: asking for it gives a clear answer, not a traceback.
set +e; "$BIN" -m training.run "$WORK/job.json" >"$WORK/train.log" 2>&1; code=$?; set -e
[ "$code" -eq 2 ] && grep -q "Training is not part of this self-contained bundle" "$WORK/train.log" \
    || fail "training in the bundle: exit $code, $(cat "$WORK/train.log")"

# 6: the per-user install script: menu entry, file type, command; then its uninstall
HOME_DIR="$WORK/home"
mkdir -p "$HOME_DIR"
HOME="$HOME_DIR" XDG_DATA_HOME="$HOME_DIR/.local/share" "$BUNDLE/install.sh" >"$WORK/install.log" 2>&1 \
    || fail "install.sh: $(cat "$WORK/install.log")"
entry="$HOME_DIR/.local/share/applications/io.github.local_assistant.LocalAssistant.desktop"
[ -f "$entry" ] || fail "install.sh left no desktop entry"
grep -q "^Exec=$HOME_DIR/.local/share/local-assistant/bundle/local-assistant %F" "$entry" || fail "the installed entry does not run the installed program"
if command -v desktop-file-validate >/dev/null; then desktop-file-validate "$entry" || fail "the installed entry is not valid"; fi
[ -f "$HOME_DIR/.local/share/icons/hicolor/256x256/apps/io.github.local_assistant.LocalAssistant.png" ] || fail "no icon installed"
if command -v update-mime-database >/dev/null; then
    grep -q "application/x-gguf" "$HOME_DIR/.local/share/mime/globs2" || fail "the .gguf file type is not registered"
fi
ASSISTANT_DATA_DIR="$WORK/data" "$HOME_DIR/.local/bin/local-assistant" models list | grep -q smollm2 \
    || fail "the installed command does not work"
HOME="$HOME_DIR" XDG_DATA_HOME="$HOME_DIR/.local/share" "$HOME_DIR/.local/share/local-assistant/bundle/install.sh" --uninstall \
    >"$WORK/uninstall.log" 2>&1 || fail "install.sh --uninstall: $(cat "$WORK/uninstall.log")"
[ ! -e "$entry" ] && [ ! -e "$HOME_DIR/.local/bin/local-assistant" ] && [ ! -e "$HOME_DIR/.local/share/local-assistant/bundle" ] \
    || fail "--uninstall left files behind"
echo "install.sh installed the command, menu entry, icons and file type for one user, and --uninstall removed them"

size_mb="$(du -sm "$BUNDLE" | cut -f1)"
echo "screenshots: $OUT/window.png $OUT/open-with.png"
ratio="$(awk -v a="$window_s" -v b="$venv_window_s" 'BEGIN { printf "%.2f", a / b }')"
printf '{"benchmark": "bundle_start", "figures": {"window_s": %s, "venv_window_s": %s, "window_s_ratio": %s, "engine_worker_s": %s, "second_launch_s": %s, "bundle_mb": %s}, "targets": {}, "met": true}\n' \
    "$window_s" "$venv_window_s" "$ratio" "$worker_s" "$second_s" "$size_mb"
