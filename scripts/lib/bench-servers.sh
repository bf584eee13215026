# Sourced by the bench scripts that start servers of their own (from the repository root): a
# scratch folder and the servers' processes, both cleaned up on exit, and two loopback helpers.
#   work                          the scratch folder
#   pids+=(PID)                   a process to stop on exit
#   free_port                     prints a free loopback port
#   wait_for_200 URL [SECONDS]    waits until URL answers 200 (default 60 s), else exits 1
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_for_200() {
  local url=$1 tries=$((${2:-60} * 10))
  for _ in $(seq 1 "$tries"); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$url" || true) == 200 ]] && return 0
    sleep 0.1
  done
  echo "bench: $url never answered 200" >&2
  exit 1
}
