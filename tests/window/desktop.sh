#!/bin/bash
# The real window under Xvfb, as a desktop sees it: its icon (_NET_WM_ICON), its title while a job
# runs ("batchwise — 1/4 (40%)") and after, a screenshot of the grid while an image is being tiled,
# and one of the message shown when the system has no file dialog (no desktop portal on a session
# bus, no zenity: what a bare X server has).
#   bash tests/window/desktop.sh [DIR]     (default docs/: running.png, no-dialog.png)
# Needs: Xvfb, xdotool, x11-utils (xprop), imagemagick (import), mesa-vulkan-drivers. Builds the
# app first. Fails when the icon or the progress in the title is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/window/window.sh
shots=${1:-docs}
work=$(mktemp -d)
app=; xvfb=
trap 'status=$?; [ $status -ne 0 ] && tail -20 "$work/app.log"; kill $app $xvfb 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --quiet
bin=${CARGO_TARGET_DIR:-target}/debug/batchwise
mkdir -p "$work/photos"
# One large photo first (many tiles: its share shows in the grid and the title), then small ones.
convert tests/fixtures/photo-256.png -resize 300% "$work/photos/a-large.png"
cp tests/fixtures/photo-256.png tests/fixtures/photo-224.png tests/fixtures/photo-60x44.png "$work/photos/"

display=:97
export DISPLAY=$display XDG_RUNTIME_DIR=$work/run
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
Xvfb $display -screen 0 1280x800x24 -nolisten tcp & xvfb=$!
sleep 2
# A fresh settings folder; no session bus and no zenity: no file dialog can open.
export XDG_DATA_HOME="$work/data" XDG_CONFIG_HOME="$work/config"
unset DBUS_SESSION_BUS_ADDRESS
if command -v zenity >/dev/null; then echo "zenity is installed: the no-dialog message will not show" >&2; fi
RUST_LOG=batchwise=info "$bin" app "$work/photos" > "$work/app.log" 2>&1 & app=$!
wait_for_window

# The icon: a 128 x 128 image on the window.
icon=$(xprop -id "$win" _NET_WM_ICON | sed -n 1p)
echo "$icon"
grep -q "128 x 128" <<<"$icon"

# Run (Ctrl+Enter) and watch the title until the job ends.
xdotool windowfocus --sync "$win" 2>/dev/null || true
xdotool key --window "$win" ctrl+Return
shot=
: > "$work/titles"
for _ in $(seq 1 3000); do
  title=$(xdotool getwindowname "$win")
  tail -1 "$work/titles" | grep -qxF "$title" || echo "$title" >> "$work/titles"
  if [ -z "$shot" ] && grep -Eq '^batchwise — 0/4 \([1-9][0-9]?%\)' <<<"$title"; then
    import -window root -crop 1200x760+0+0 "$shots/running.png"; shot=1
  fi
  grep -q "job finished" "$work/app.log" && [ "$title" = batchwise ] && break
  sleep 0.1
done
echo "titles seen:"; cat "$work/titles"
grep -Eq '^batchwise — [0-9]+/4 \([0-9]+%\)' "$work/titles"
[ "$(tail -1 "$work/titles")" = batchwise ]

# Add images... (Ctrl+O) with no dialog backend: the message, with a field for a typed path.
xdotool key --window "$win" ctrl+o
sleep 3
import -window root -crop 1200x760+0+0 "$shots/no-dialog.png"
grep -q "no file dialog could open" "$work/app.log"
echo "screenshots: ${shot:+$shots/running.png }$shots/no-dialog.png"
