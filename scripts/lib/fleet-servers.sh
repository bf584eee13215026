# Sourced by the fleet bench scripts after scripts/lib/bench-node.sh (which sets $work):
# a nats-server with JetStream and a docker-registry on free loopback ports, stopped on exit.
#   start_fleet_servers   sets nats (nats://…) and registry (127.0.0.1:PORT)
#   server_pids           their processes (and any the caller adds), killed by stop_fleet_servers
server_pids=()
stop_fleet_servers() {
  for pid in "${server_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${server_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  cleanup
}
trap stop_fleet_servers EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_fleet_servers() {
  local nats_port reg_port port
  nats_port=$(free_port)
  /usr/sbin/nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$work/js" >"$work/nats.log" 2>&1 &
  server_pids+=($!)
  reg_port=$(free_port)
  printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
    "$work/registry" "$reg_port" >"$work/registry.yml"
  /usr/bin/docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
  server_pids+=($!)
  for port in "$nats_port" "$reg_port"; do
    for _ in $(seq 1 200); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.05; done
  done
  nats=nats://127.0.0.1:$nats_port
  registry=127.0.0.1:$reg_port
}
