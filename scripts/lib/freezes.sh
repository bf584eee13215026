# Sourced by bench scripts: notes when the whole machine stops (scripts/lib/freeze_canary.py),
# so a round's p99 can be read for what it is.
#   start_freeze_canary DIR      starts the canary, logging into DIR; sets canary_pid (kill it on exit)
#   freeze_mark                  prints the canary log's line count now (a mark)
#   freezes_since MARK           prints "N MAX_MS": freezes logged since MARK, and the longest
start_freeze_canary() {
  canary_log="$1/freezes.log"
  : >"$canary_log"
  python3 scripts/lib/freeze_canary.py "$canary_log" &
  canary_pid=$!
}

freeze_mark() {
  wc -l <"$canary_log"
}

freezes_since() {
  tail -n +"$(($1 + 1))" "$canary_log" | awk '{ n++; if ($2 > max) max = $2 } END { printf "%d %.0f\n", n, max }'
}

# A line saying how often the machine froze during the whole run, and what that does to p99.
freeze_summary() {
  local n max
  read -r n max < <(freezes_since 0)
  if [[ $n -gt 0 ]]; then
    echo "the machine froze $n times for 20 ms or more during this run (longest $max ms): every" \
      "request in flight then waits, on every server; wrk adds samples for the requests a" \
      "stalled connection did not send, so one freeze in a round lifts that round's p99"
  else
    echo "the machine never froze for 20 ms or more during this run"
  fi
}
