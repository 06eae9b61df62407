#!/usr/bin/env bash
# kabench's client CPU per request beside oha's, on the same endpoint at the same rate.
#
# Starts `kabench sim` on a free loopback port (its own process, not measured), loads
# tiny-50m and keeps it resident, then sends RATE requests/s × N of the same streamed
# POST /api/generate body with oha and with `kabench run`, one after the other, each
# under /usr/bin/time -v. CPU per request = (user + sys of that client process) / N.
# kabench is measured twice: with its default telemetry (RSS, /api/ps, NVML where a GPU
# is) and with `[telemetry] sources = []` (the request path alone), and once with one
# request, so its fixed cost (start, checks, report rendering) is known. The
# send error (sent_ms - intended_ms in requests.csv) of each kabench run is printed too.
# The three take turns ROUNDS times (the speed of a shared machine drifts by more than
# the differences measured), and each figure is given as min / median / max.
#
#   cargo build --release && benches/oha_compare.sh            # RATE=50 N=1000 ROUNDS=3
#   RATE=200 N=4000 ROUNDS=5 benches/oha_compare.sh
#
# Needs oha (`cargo install oha`), python3, curl and GNU time (/usr/bin/time).
set -euo pipefail

RATE=${RATE:-50}
N=${N:-1000}
ROUNDS=${ROUNDS:-3}
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

oha_run() { # round -> ms CPU
    /usr/bin/time -v "$OHA" --no-tui -q "$RATE" -n "$N" -m POST \
        -H 'Content-Type: application/json' -d "$BODY" "$url/api/generate" \
        >"$work/oha-$1.out" 2>"$work/oha-$1.time"
    cpu_ms "$work/oha-$1.time"
}
per() { echo "$1 / $N" | bc -l; }
stats() { # values... -> "min / median / max"
    printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {printf "%.3f / %.3f / %.3f", v[1], v[int((NR+1)/2)], v[NR]}'
}

fixed_ms=$(kabench_run one 1 "[telemetry]
sources = []")
echo "kabench fixed cost (a 1-request run): $fixed_ms ms CPU"
# The machine's speed drifts from minute to minute: the clients take turns, ROUNDS
# times, and each figure is read as min / median / max over the rounds.
declare -a oha_per bare_per full_per
for round in $(seq "$ROUNDS"); do
    oha_ms=$(oha_run "$round")
    oha_ok=$(grep -E '^\s+\[200\]' "$work/oha-$round.out" | awk '{print $2}')
    bare_ms=$(kabench_run "bare-$round" "$N" "[telemetry]
sources = []")
    full_ms=$(kabench_run "full-$round" "$N" "")
    oha_per+=("$(per "$oha_ms")")
    bare_per+=("$(per "$bare_ms")")
    full_per+=("$(per "$full_ms")")
    printf 'round %s: oha %.3f ms/request (%s answered 200); kabench telemetry off %.3f (%s), default telemetry %.3f (%s)\n' \
        "$round" "$(per "$oha_ms")" "${oha_ok:-?}" "$(per "$bare_ms")" "$(send_error "$work/bare-$round")" \
        "$(per "$full_ms")" "$(send_error "$work/full-$round")"
done
echo "CPU per request, min / median / max over $ROUNDS rounds:"
echo "  oha $("$OHA" --version | awk '{print $2}'):          $(stats "${oha_per[@]}") ms"
echo "  kabench, telemetry off:     $(stats "${bare_per[@]}") ms"
echo "  kabench, default telemetry: $(stats "${full_per[@]}") ms"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
