#!/usr/bin/env bash
# kabench's client CPU per request beside oha's, on the same endpoint at the same rate.
#
# Starts `kabench sim` on a free loopback port (its own process, not measured), loads
# tiny-50m and keeps it resident, then sends RATE requests/s x N of the same streamed
# POST /api/generate body with oha and with `kabench run`, each under /usr/bin/time -v.
# CPU per request = (user + sys of that client process) / N, fixed costs included.
# kabench is measured with `[telemetry] sources = []` (the request path alone), with
# its default telemetry (RSS, /api/ps on the adaptive schedule, NVML where a GPU is), and
# with the default telemetry polling /api/ps at a fixed 100 ms (`ps_adaptive = false`).
# Each kabench run goes side by side with an oha run: both start together, and where `taskset` is available and
# there are two CPUs or more, each is pinned to a CPU of its own, the two swapping CPUs
# every round (PIN=0: not pinned), so
# the drift in the speed of a shared machine, larger than the differences measured,
# hits both alike. The pairs are repeated ROUNDS times; each figure is given as
# min / median / max, with the ratio of each pair. Each client's fixed cost (a run of
# one request) and the send error (sent_ms - intended_ms in requests.csv) of each
# kabench run are printed too.
#
#   cargo build --release && benches/oha_compare.sh            # RATE=50 N=1000 ROUNDS=3
#   RATE=200 N=4000 ROUNDS=5 benches/oha_compare.sh
#
# Needs oha (`cargo install oha`), python3, curl and GNU time (/usr/bin/time).
set -euo pipefail

RATE=${RATE:-50}
N=${N:-1000}
ROUNDS=${ROUNDS:-3}
PIN=${PIN:-1}
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

# pin N: the command prefix that pins a client to CPU N (nothing if not pinning).
pin() {
    if [ "$PIN" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
        echo "taskset -c $1"
    fi
}

kabench_run() { # label requests telemetry-line -> ms CPU
    scenario "$1" "$2" "$3"
    $(pin "$kabench_cpu") /usr/bin/time -v "$KABENCH" run "$work/$1.toml" --target "$url" --no-prewarm --quiet \
        --out "$work/$1" >/dev/null 2>"$work/$1.time"
    cpu_ms "$work/$1.time"
}

oha_run() { # label requests -> ms CPU
    $(pin "$oha_cpu") /usr/bin/time -v "$OHA" --no-tui -q "$RATE" -n "$2" -m POST \
        -H 'Content-Type: application/json' -d "$BODY" "$url/api/generate" \
        >"$work/$1.out" 2>"$work/$1.time"
    cpu_ms "$work/$1.time"
}

# side_by_side label telemetry-line: oha and kabench at the same time; "oha_ms kabench_ms"
side_by_side() {
    oha_run "oha-$1" "$N" >"$work/oha-$1.ms" &
    local oha_pid=$!
    local k
    k=$(kabench_run "$1" "$N" "$2")
    wait "$oha_pid"
    echo "$(cat "$work/oha-$1.ms") $k"
}

echo "endpoint: kabench sim $("$KABENCH" --version 2>/dev/null | awk '{print $2}') on $url, $MODEL resident; $RATE req/s x $N; $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg); pinned: $([ -n "$(pin 0)" ] && echo yes || echo no)"

per() { echo "$1 / $N" | bc -l; }
stats() { # values... -> "min / median / max"
    printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {printf "%.3f / %.3f / %.3f", v[1], v[int((NR+1)/2)], v[NR]}'
}

oha_cpu=0 kabench_cpu=1
off="[telemetry]
sources = []"
echo "fixed cost (a 1-request run): kabench $(kabench_run one 1 "$off") ms CPU, oha $(oha_run oha-one 1) ms CPU"
fixed="[telemetry]
ps_adaptive = false"
declare -a oha_per bare_per full_per fixd_per bare_ratio full_ratio fixd_ratio
for round in $(seq "$ROUNDS"); do
    # The clients swap CPUs every round: the CPU that takes the interrupts or more of
    # the simulator's work is then each one's in turn.
    oha_cpu=$(( round % 2 )) kabench_cpu=$(( (round + 1) % 2 ))
    read -r oha_a bare_ms < <(side_by_side "bare-$round" "$off")
    read -r oha_b full_ms < <(side_by_side "full-$round" "")
    read -r oha_c fixd_ms < <(side_by_side "fixd-$round" "$fixed")
    oha_per+=("$(per "$oha_a")" "$(per "$oha_b")" "$(per "$oha_c")")
    bare_per+=("$(per "$bare_ms")")
    full_per+=("$(per "$full_ms")")
    fixd_per+=("$(per "$fixd_ms")")
    bare_ratio+=("$(echo "$bare_ms / $oha_a" | bc -l)")
    full_ratio+=("$(echo "$full_ms / $oha_b" | bc -l)")
    fixd_ratio+=("$(echo "$fixd_ms / $oha_c" | bc -l)")
    printf 'round %s: telemetry off %.3f ms/request beside oha %.3f (x%.2f; %s)\n' "$round" \
        "$(per "$bare_ms")" "$(per "$oha_a")" "${bare_ratio[-1]}" "$(send_error "$work/bare-$round")"
    printf '         default telemetry %.3f ms/request beside oha %.3f (x%.2f; %s)\n' \
        "$(per "$full_ms")" "$(per "$oha_b")" "${full_ratio[-1]}" "$(send_error "$work/full-$round")"
    printf '         fixed 100 ms /api/ps %.3f ms/request beside oha %.3f (x%.2f; %s)\n' \
        "$(per "$fixd_ms")" "$(per "$oha_c")" "${fixd_ratio[-1]}" "$(send_error "$work/fixd-$round")"
done
echo "CPU per request, min / median / max over $ROUNDS rounds:"
echo "  oha $("$OHA" --version | awk '{print $2}'):          $(stats "${oha_per[@]}") ms"
echo "  kabench, telemetry off:     $(stats "${bare_per[@]}") ms; beside oha x$(stats "${bare_ratio[@]}")"
echo "  kabench, default telemetry: $(stats "${full_per[@]}") ms; beside oha x$(stats "${full_ratio[@]}")"
echo "  kabench, fixed /api/ps:     $(stats "${fixd_per[@]}") ms; beside oha x$(stats "${fixd_ratio[@]}")"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
