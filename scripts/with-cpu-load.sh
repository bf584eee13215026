#!/usr/bin/env bash
# Runs a command while every core is kept busy by another process, to check that it does not
# depend on an idle machine (tests that assume timing fail this way first).
#
#   scripts/with-cpu-load.sh [--minutes N] COMMAND [ARGS...]
#
# Starts one `sha256sum /dev/zero` per core (at normal priority, like any other busy process on a
# gateway), runs COMMAND, and stops the load when COMMAND ends or after N minutes (default 60),
# whichever comes first. Exits with COMMAND's status.
set -euo pipefail
minutes=60
if [[ ${1:-} == --minutes ]]; then
  minutes=$2
  shift 2
fi
[[ $# -gt 0 ]] || { echo "usage: $0 [--minutes N] COMMAND [ARGS...]" >&2; exit 2; }

burners=()
stop_load() {
  for pid in "${burners[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait "${burners[@]}" 2>/dev/null || true
}
trap stop_load EXIT INT TERM
for _ in $(seq 1 "$(nproc)"); do
  timeout "${minutes}m" sha256sum /dev/zero >/dev/null &
  burners+=($!)
done
echo "with-cpu-load: $(nproc) busy processes for at most ${minutes} min while running: $*" >&2
status=0
"$@" || status=$?
echo "with-cpu-load: done (exit $status)" >&2
exit $status
