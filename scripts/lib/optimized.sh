# Sourced by the bench scripts that deploy big components (which serve first from the
# baseline tier's code).
#   wait_until_optimized ADMIN_URL DATA_DIR APP   returns once `edge list` shows APP's code
#                                                 as optimized (gives up after 120 s)
wait_until_optimized() {
  local tier
  for _ in $(seq 1 1200); do
    tier=$(target/release/edge list --json --node "$1" --data-dir "$2" |
      python3 -c "import json, sys; print(next((a.get('tier') or '') for a in json.load(sys.stdin) if a['name'] == '$3'))")
    [[ $tier == optimized ]] && return
    sleep 0.1
  done
}
