# Sourced by the scripts beside it: waits for the app's window (title "batchwise"), puts it at the
# top left at 1200 x 760 and sets $win to its id.
wait_for_window() {
  for _ in $(seq 1 100); do
    xdotool search --name '^batchwise$' >/dev/null 2>&1 && break; sleep 0.2
  done
  win=$(xdotool search --name '^batchwise$' | head -1)
  xdotool windowmove "$win" 0 0 windowsize "$win" 1200 760
  sleep 3
}
