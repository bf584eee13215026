# Sourced by bench scripts: notes when a CPU of the machine stops running anything
# (scripts/lib/freeze_canary.py, one per CPU), so a round's p99 can be read for what it is.
#   start_freeze_canary DIR      starts the canaries, logging into DIR; sets canary_pids (kill them on exit)
#   freeze_mark                  prints the canary log's line count now (a mark)
#   freezes_since MARK           prints "N MAX_MS": CPU freezes logged since MARK, and the longest
#   freezes_label MARK           prints "-", or "Nx, longest MAX ms" for the freezes since MARK
#   freeze_summary               a line on the whole run's freezes and what they do to p99
start_freeze_canary() {
  canary_log="$1/freezes.log"
  : >"$canary_log"
  canary_pids=()
  local cpu
  # The CPUs this process may run on (an affinity mask or cpuset may leave out CPU 0).
  for cpu in $(python3 -c 'import os; print(*sorted(os.sched_getaffinity(0)))'); do
    python3 scripts/lib/freeze_canary.py "$canary_log" "$cpu" &
    canary_pids+=($!)
  done
}

freeze_mark() {
  wc -l <"$canary_log"
}

freezes_since() {
  tail -n +"$(($1 + 1))" "$canary_log" | awk '{ n++; if ($2 > max) max = $2 } END { printf "%d %.0f\n", n, max }'
}

freezes_label() {
  local n max
  read -r n max < <(freezes_since "$1")
  if [[ $n -gt 0 ]]; then echo "${n}x, longest $max ms"; else echo "-"; fi
}

freeze_summary() {
  local n max
  read -r n max < <(freezes_since 0)
  if [[ $n -gt 0 ]]; then
    echo "a CPU of this machine froze $n times for 20 ms or more during this run (longest $max ms):" \
      "whatever ran there waited, on every server; wrk adds samples for the requests a" \
      "stalled connection did not send, so one freeze in a round lifts that round's p99"
  else
    echo "no CPU of this machine froze for 20 ms or more during this run"
  fi
}
