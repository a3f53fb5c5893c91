#!/bin/bash
# The real window under Xvfb: a real drag and drop of a folder (an XDND drag from a GTK source,
# driven by xdotool), a click on Run, then screenshots of the window and of the viewer (a click on
# an item) for the README.
#   bash tests/window/drop-and-screenshot.sh [DIR]     (default docs/: screenshot.png, viewer.png)
# Needs: Xvfb, xdotool, imagemagick (import), python3-gi, gir1.2-gtk-3.0, mesa-vulkan-drivers,
# and ../shared/tools/xdnd-drop beside the repository. Builds the app first.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/window/window.sh
shots=${1:-docs}
drop=${XDND_DROP:-../shared/tools/xdnd-drop}
work=$(mktemp -d)
app=; xvfb=
trap 'status=$?; [ $status -ne 0 ] && tail -20 "$work/app.log"; kill $app $xvfb 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --quiet
mkdir -p "$work/photos/more"
i=0
for f in tests/fixtures/photo-256.png tests/fixtures/photo-224.png tests/fixtures/photo-128-faces.png \
         tests/fixtures/photo-60x44.png; do
  cp "$f" "$work/photos/$( [ $i -ge 2 ] && echo more/ )$(basename "$f")"; i=$((i + 1))
done

export DISPLAY=:99 XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/xdg}
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
Xvfb :99 -screen 0 1280x800x24 -nolisten tcp & xvfb=$!
sleep 2
# A fresh settings folder, so the window opens as a newcomer sees it; outputs go to
# batchwise-output beside the dropped folder.
export XDG_DATA_HOME="$work/data" XDG_CONFIG_HOME="$work/config"
RUST_LOG=batchwise=info ./target/debug/batchwise app > "$work/app.log" 2>&1 & app=$!
wait_for_window

# Drop the folder onto the grid, as a person would.
"$drop" 700 400 "$work/photos"
for _ in $(seq 1 50); do grep -q "added 4 file(s) from 1 folder(s)" "$work/app.log" && break; sleep 0.2; done
grep "added" "$work/app.log"

# Run (the toolbar's Run button) and wait for the job.
xdotool windowfocus --sync "$win" 2>/dev/null || true
xdotool mousemove 394 12 click 1
for _ in $(seq 1 600); do grep -q "job finished" "$work/app.log" && break; sleep 0.5; done
grep "job finished" "$work/app.log"
find "$work/batchwise-output" -type f | sort
sleep 3
import -window root -crop 1200x760+0+0 "$shots/screenshot.png"
# The viewer on photo-224.png (the third item of the grid): before | after.
xdotool mousemove 583 80 click 1
sleep 3
import -window root -crop 1200x760+0+0 "$shots/viewer.png"
echo "screenshots: $shots/screenshot.png $shots/viewer.png"
