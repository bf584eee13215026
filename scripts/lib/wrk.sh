# Sourced by the bench scripts that load a server with wrk (from the repository root).
#   wrk_measure URL CONNECTIONS SECONDS   runs `wrk -t1 --latency` and prints
#                                         "requests_per_s p50_ms p99_ms"; fails (after saying
#                                         so on stderr) when any answer was not 2xx or 3xx
command -v wrk >/dev/null || { echo "bench: wrk is needed (Debian: apt-get install wrk)" >&2; exit 1; }

wrk_measure() {
  wrk -t1 -c"$2" -d"$3s" --latency "$1" | awk '
    function ms(v) {
      if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
      if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
      if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
      return v
    }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    $1 == "Requests/sec:" { rps = $2 }
    / Non-2xx or 3xx responses:/ { bad = $NF }
    END {
      if (bad > 0) { print "bench: " bad " non-2xx answers" > "/dev/stderr"; exit 1 }
      printf "%.0f %.3f %.3f\n", rps, p50, p99
    }'
}
