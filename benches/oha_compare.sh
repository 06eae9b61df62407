#!/usr/bin/env bash
# kabench's client CPU per request beside oha's, on the same endpoint at the same rate.
#
# Starts `kabench sim` on a free loopback port (its own process, not measured), loads
# tiny-50m and keeps it resident, then sends RATE requests/s × N of the same streamed
# POST /api/generate body with oha and with `kabench run`, one after the other, each
# under /usr/bin/time -v. CPU per request = (user + sys of that client process) / N.
# kabench is measured twice: with its default telemetry (RSS, /api/ps, NVML where a GPU
# is) and with `[telemetry] sources = []` (the request path alone), and once with one
# request, so its fixed cost (start, checks, report rendering) can be taken out. The
# send error (sent_ms - intended_ms in requests.csv) of each kabench run is printed too.
#
#   cargo build --release && benches/oha_compare.sh            # RATE=50 N=1000
#   RATE=200 N=4000 benches/oha_compare.sh
#
# Needs oha (`cargo install oha`), python3, curl and GNU time (/usr/bin/time).
set -euo pipefail

RATE=${RATE:-50}
N=${N:-1000}
KABENCH=${KABENCH:-target/release/kabench}
OHA=${OHA:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}
MODEL=tiny-50m
BODY='{"model":"tiny-50m","prompt":"Hi","stream":true,"keep_alive":-1,"options":{"num_ctx":4096,"num_predict":4}}'

work=$(mktemp -d)
sim_pid=
cleanup() {
    [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
"$KABENCH" sim --listen "127.0.0.1:$port" --page-cache-warm --num-parallel 64 2>"$work/sim.log" &
sim_pid=$!
for _ in $(seq 100); do
    curl -sf "$url/api/version" >/dev/null && break
    sleep 0.1
done
curl -sf "$url/api/generate" -d "{\"model\":\"$MODEL\",\"keep_alive\":-1}" >/dev/null

scenario() { # name requests telemetry-line
    cat >"$work/$1.toml" <<EOF
name = "$1"
[[stream]]
name = "s"
model = "$MODEL"
api = "generate"
num_ctx = 4096
prompt = "Hi"
max_tokens = 4
keep_alive = -1
arrival = { kind = "constant", rate = "$RATE/s" }
[run]
requests = $2
concurrency = 4096
$3
EOF
}

cpu_ms() { # /usr/bin/time -v file -> user+sys in ms
    awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {printf "%.1f", (u+s)*1000}' "$1"
}

send_error() { # run folder -> "p50 p99 max" of sent_ms - intended_ms, ms
    python3 - "$1/requests.csv" <<'EOF'
import csv, sys
late = sorted(float(r["sent_ms"]) - float(r["intended_ms"])
              for r in csv.DictReader(open(sys.argv[1])) if r["sent_ms"] and not r["error"])
q = lambda p: late[min(len(late) - 1, int(p * len(late)))]
print(f"send error p50 {q(0.5):.3f} ms, p99 {q(0.99):.3f} ms, max {late[-1]:.3f} ms ({len(late)} sent)")
EOF
}

kabench_run() { # label requests telemetry-line
    scenario "$1" "$2" "$3"
    /usr/bin/time -v "$KABENCH" run "$work/$1.toml" --target "$url" --no-prewarm --quiet \
        --out "$work/$1" >/dev/null 2>"$work/$1.time"
    cpu_ms "$work/$1.time"
}

echo "endpoint: kabench sim $("$KABENCH" --version 2>/dev/null | awk '{print $2}') on $url, $MODEL resident; $RATE req/s x $N; $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)"

/usr/bin/time -v "$OHA" --no-tui -q "$RATE" -n "$N" -m POST \
    -H 'Content-Type: application/json' -d "$BODY" "$url/api/generate" \
    >"$work/oha.out" 2>"$work/oha.time"
oha_ms=$(cpu_ms "$work/oha.time")
oha_ok=$(grep -E '^\s+\[200\]' "$work/oha.out" | awk '{print $2}')
printf 'oha %s: %s ms CPU, %.3f ms/request (%s answered 200)\n' \
    "$("$OHA" --version | awk '{print $2}')" "$oha_ms" "$(echo "$oha_ms / $N" | bc -l)" "${oha_ok:-?}"

fixed_ms=$(kabench_run one 1 "[telemetry]
sources = []")
bare_ms=$(kabench_run bare "$N" "[telemetry]
sources = []")
full_ms=$(kabench_run full "$N" "")
per() { echo "$1 / $N" | bc -l; }
marginal() { echo "($1 - $fixed_ms) / ($N - 1)" | bc -l; }
printf 'kabench, telemetry off: %s ms CPU, %.3f ms/request (%.3f beyond the %s ms of a 1-request run); %s\n' \
    "$bare_ms" "$(per "$bare_ms")" "$(marginal "$bare_ms")" "$fixed_ms" "$(send_error "$work/bare")"
printf 'kabench, default telemetry: %s ms CPU, %.3f ms/request (%.3f beyond a 1-request run); %s\n' \
    "$full_ms" "$(per "$full_ms")" "$(marginal "$full_ms")" "$(send_error "$work/full")"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
