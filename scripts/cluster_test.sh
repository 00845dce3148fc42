#!/usr/bin/env bash
# Multi-node test on one machine: a Ray head and a second Ray node (loopback only, 1 logical
# CPU each), the app deployed with `serve deploy`, replicas spread over both nodes, a short
# Locust load whose answers must come from replicas on both nodes, then the router and proxy
# deployments scaled up and down with `serve deploy` under load without a failed request, and
# finally the router put under Serve autoscaling (min 1, max 2 replicas) and a Locust ramp that
# must make the autoscaler add the second replica (seen in `serve status`) and, once the load
# ends, remove it again.
#
#   make cluster-test            # or: bash scripts/cluster_test.sh
#
# Knobs (environment): LOCUSTFILE (loadtest/), USERS (4), SPREAD_LOAD_S (45),
# SCALE_LOAD_S (240), RAMP_USERS (6), RAMP_LOAD_S (240), LOCUST_EXTRA_ARGS (extra flags for locust, space-separated),
# HEAD_PORT (6380), DASHBOARD_PORT (8266), HEAD_METRICS_PORT / WORKER_METRICS_PORT (18080/1).
#
# The exit trap runs `ray stop`, which stops EVERY Ray process on this host, not only this
# test's. So the script refuses to start while another Ray instance runs here (set
# COLM_CLUSTER_TEST_FORCE=1 to run anyway). Logs, configs and Locust CSVs stay in $WORK.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Loopback only, and provably so. Ray turns a loopback --node-ip-address or --address into the
# address it would reach the internet from (ray._private.services.resolve_ip_for_localhost), so
# on a host with a route out every node and every GCS address would sit on the host's interface.
# The test therefore runs in a network namespace of its own, where loopback is the only
# interface, under a hostname that resolves to 127.0.0.1 (Ray's fallback): every address is
# 127.0.0.1, and `check loopback` proves it. Needs root (or unprivileged user namespaces);
# COLM_CT_NETNS=1 says the caller has isolated it already.
if [[ -z ${COLM_CT_NETNS:-} ]]; then
    exec env COLM_CT_NETNS=1 unshare --net --uts --fork -- bash -c \
        'python3 scripts/loopback_up.py && hostname localhost && exec bash "$0" "$@"' "$0" "$@"
fi
# `make cluster-test` does not activate the project's virtualenv: use it when there is one,
# so ray, serve, locust, colm-serve and python (and the Ray workers they start) come from it.
if [[ -z ${VIRTUAL_ENV:-} && -x .venv/bin/python ]]; then
    export PATH=$PWD/.venv/bin:$PATH
fi

CONFIG=deploy/serve_config.cluster-test.yaml
LOCUSTFILE=${LOCUSTFILE:-loadtest/}
USERS=${USERS:-4}
SPREAD_LOAD_S=${SPREAD_LOAD_S:-45}
SCALE_LOAD_S=${SCALE_LOAD_S:-240}
RAMP_USERS=${RAMP_USERS:-6}
RAMP_LOAD_S=${RAMP_LOAD_S:-240}
HEAD_PORT=${HEAD_PORT:-6380}
DASHBOARD_PORT=${DASHBOARD_PORT:-8266}
HEAD_METRICS_PORT=${HEAD_METRICS_PORT:-18080}
WORKER_METRICS_PORT=${WORKER_METRICS_PORT:-18081}
# Ray's CLIs let these override the addresses given on the command line: aim every command
# at this test's cluster, never at another one the caller's shell points to.
unset RAY_ADDRESS RAY_API_SERVER_ADDRESS RAY_DASHBOARD_ADDRESS
read -r -a LOCUST_EXTRA <<< "${LOCUST_EXTRA_ARGS:-}"

RAY_ADDRESS_LOCAL=127.0.0.1:$HEAD_PORT
DASHBOARD=http://127.0.0.1:$DASHBOARD_PORT
RAY_TMP=/tmp/colm-ct            # short on purpose: Ray's socket paths must fit in 107 bytes
WORK=$(mktemp -d "${TMPDIR:-/tmp}/colm-cluster-test.XXXXXX")
HTTP_PORT=$(python -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["http_options"]["port"])' "$CONFIG")
APP_URL=http://127.0.0.1:$HTTP_PORT
METRICS_ARGS=(--metrics "http://127.0.0.1:$HEAD_METRICS_PORT/metrics"
              --metrics "http://127.0.0.1:$WORKER_METRICS_PORT/metrics")

ray_started=0
locust_pid=
locust_started=0

log() { printf '\n== %s\n' "$*"; }
check() { python scripts/cluster_check.py "$@"; }

cleanup() {
    local rc=$?
    if [[ -n $locust_pid ]]; then
        kill "$locust_pid" 2>/dev/null || true
    fi
    if ((ray_started)); then
        serve status -a "$DASHBOARD" > "$WORK/serve-status-at-exit.yaml" 2>&1 || true
        ray stop > "$WORK/ray-stop.log" 2>&1 || true
    fi
    if ((rc == 0)); then
        echo "cluster test PASSED (logs: $WORK)"
    else
        echo "cluster test FAILED with status $rc (logs: $WORK)" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT

# Starts Locust headless in the background for $2 seconds, CSVs under $WORK/$1, with $3 users
# (default $USERS) spawned at $4 per second (default: all at once). Its pid is kept so the
# exit trap can stop it; stop-timeout lets answers in flight at the end finish, so they count
# instead of being cut off: four `colm` answers at once, written on CPU by the two 1-CPU nodes,
# have taken over 165 s each on the 2-core host.
start_locust() {
    local users=${3:-$USERS}
    locust -f "$LOCUSTFILE" --headless --users "$users" --spawn-rate "${4:-$users}" \
        --run-time "${2}s" --stop-timeout 300 --host "$APP_URL" --csv "$WORK/$1" \
        --only-summary "${LOCUST_EXTRA[@]}" > "$WORK/locust-$1.log" 2>&1 &
    locust_pid=$!
    locust_started=$SECONDS
}

# Waits for the Locust run $1 and requires requests with no failures.
finish_locust() {
    local pid=$locust_pid
    if ! wait "$pid"; then
        locust_pid=
        tail -n 40 "$WORK/locust-$1.log" >&2
        return 1
    fi
    locust_pid=
    check locust-ok --csv "$WORK/$1"
}

# Fails (message $2) when the Locust run started last, $1 seconds long, is over already: a
# scaling step seen after the load stopped proves nothing about scaling under load.
require_load_running() {
    if ((SECONDS - locust_started >= $1)); then
        echo "$2" >&2
        return 1
    fi
}

show_status() {
    serve status -a "$DASHBOARD" | tee "$WORK/serve-status-$1.yaml"
}

preflight() {
    if pgrep -x gcs_server > /dev/null && [[ ${COLM_CLUSTER_TEST_FORCE:-0} != 1 ]]; then
        echo "Another Ray instance runs on this host, and this test's 'ray stop' would stop it." >&2
        echo "Stop it first, or set COLM_CLUSTER_TEST_FORCE=1." >&2
        exit 2
    fi
    colm-serve check-config "$CONFIG"
}

start_cluster() {
    log "starting a Ray head ($RAY_ADDRESS_LOCAL) and a second node, 1 CPU each"
    # The HTTP proxy runs on the head only and would send every request to the head's router
    # replica while it has room; turn that preference off so both router replicas get traffic.
    export RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING=0
    export RAY_USAGE_STATS_ENABLED=0
    # Loopback-only test cluster: no token auth, so the second node and `serve deploy` need no token.
    export RAY_AUTH_MODE=disabled
    ray_started=1
    ray start --head --node-ip-address=127.0.0.1 --port="$HEAD_PORT" --num-cpus=1 --num-gpus=0 \
        --dashboard-host=127.0.0.1 --dashboard-port="$DASHBOARD_PORT" \
        --dashboard-agent-listen-port=52366 --metrics-export-port="$HEAD_METRICS_PORT" \
        --ray-client-server-port=10101 --min-worker-port=0 --max-worker-port=0 \
        --temp-dir="$RAY_TMP" --disable-usage-stats > "$WORK/ray-head.log" 2>&1 ||
        { tail -n 30 "$WORK/ray-head.log" >&2; return 1; }
    ray start --address="$RAY_ADDRESS_LOCAL" --node-ip-address=127.0.0.1 --num-cpus=1 --num-gpus=0 \
        --dashboard-agent-listen-port=52367 --metrics-export-port="$WORKER_METRICS_PORT" \
        --min-worker-port=0 --max-worker-port=0 --disable-usage-stats > "$WORK/ray-worker.log" 2>&1 ||
        { tail -n 30 "$WORK/ray-worker.log" >&2; return 1; }
    # The dashboard and the second node's registration can lag `ray start` by a few seconds.
    local attempt
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
        if ray list nodes --address "$DASHBOARD" --format json > "$WORK/nodes.json" 2>> "$WORK/ray-list.log" &&
            python scripts/cluster_check.py nodes --nodes "$WORK/nodes.json" --min-nodes 2; then
            ps -eo args > "$WORK/processes.txt"
            check loopback --nodes "$WORK/nodes.json" --processes "$WORK/processes.txt"
            return 0
        fi
        echo "waiting for 2 Ray nodes (attempt $attempt)"
        sleep 3
    done
    return 1
}

deploy_and_check_spread() {
    log "serve deploy $CONFIG"
    serve deploy "$CONFIG" -a "$DASHBOARD"
    check wait --dashboard "$DASHBOARD" --timeout 900
    show_status deployed
    curl -fsS "$APP_URL/v1/models" > "$WORK/models.json"

    local names name
    names=$(check replicated --dashboard "$DASHBOARD" --app colm)
    mapfile -t SPREAD_DEPLOYMENTS <<< "$names"
    DEPLOYMENT_ARGS=()
    for name in "${SPREAD_DEPLOYMENTS[@]}"; do
        DEPLOYMENT_ARGS+=(--deployment "$name")
    done
    log "replicated deployments: ${SPREAD_DEPLOYMENTS[*]}"
    ray list actors --address "$DASHBOARD" --format json --limit 10000 > "$WORK/actors.json"
    check spread --actors "$WORK/actors.json" --app colm "${DEPLOYMENT_ARGS[@]}"
}

load_and_check_both_nodes_answer() {
    log "locust: $USERS users for ${SPREAD_LOAD_S}s"
    start_locust spread "$SPREAD_LOAD_S"
    finish_locust spread
    # Ray exports metrics every few seconds, hence the generous timeout.
    check served "${METRICS_ARGS[@]}" --app colm --timeout 120 "${DEPLOYMENT_ARGS[@]}"
}

scale_under_load() {
    check scaled-config --config "$CONFIG" --out "$WORK/scaled-up.yaml" --replicas 3 "${DEPLOYMENT_ARGS[@]}"
    check scaled-config --config "$CONFIG" --out "$WORK/scaled-down.yaml" --replicas 1 "${DEPLOYMENT_ARGS[@]}"
    local up=() down=() name
    for name in "${SPREAD_DEPLOYMENTS[@]}"; do
        up+=(--expect "$name=3")
        down+=(--expect "$name=1")
    done

    log "locust: $USERS users for ${SCALE_LOAD_S}s while scaling"
    start_locust scale "$SCALE_LOAD_S"
    sleep 15  # let every user start before the first change

    log "scale up to 3 replicas: ${SPREAD_DEPLOYMENTS[*]}"
    serve deploy "$WORK/scaled-up.yaml" -a "$DASHBOARD"
    check wait --dashboard "$DASHBOARD" --timeout 300 "${up[@]}"
    show_status scaled-up
    sleep 20  # serve some traffic at the larger size

    log "scale down to 1 replica: ${SPREAD_DEPLOYMENTS[*]}"
    serve deploy "$WORK/scaled-down.yaml" -a "$DASHBOARD"
    check wait --dashboard "$DASHBOARD" --timeout 600 "${down[@]}"
    show_status scaled-down

    require_load_running "$SCALE_LOAD_S" "the load ended before scaling finished, so this proved nothing; raise SCALE_LOAD_S"
    finish_locust scale
}

# The router under Serve's own autoscaling: a `deployments:` override (lightweight, nothing
# restarts) with min 1 / max 2 replicas and a target of 1 ongoing request per replica, then a
# Locust ramp (one more user every 10 s). A colm answer takes many seconds on CPU, so a few
# users keep more than one request in the router and Serve must add the second replica.
autoscale_under_ramp() {
    local others=() name
    for name in "${SPREAD_DEPLOYMENTS[@]}"; do
        [[ $name == Router ]] || others+=(--deployment "$name")
    done
    check scaled-config --config "$CONFIG" --out "$WORK/autoscaling.yaml" --replicas 1 \
        --deployment Router "${others[@]}" --autoscale Router --min-replicas 1 --max-replicas 2 \
        --target-ongoing-requests 1 --upscale-delay-s 5 --downscale-delay-s 30

    log "router autoscaling: min 1, max 2, target 1 ongoing request per replica"
    serve deploy "$WORK/autoscaling.yaml" -a "$DASHBOARD"
    check wait --dashboard "$DASHBOARD" --timeout 300 --expect Router=1
    show_status autoscaling-idle

    log "locust ramp: up to $RAMP_USERS users, one more every 10 s, for ${RAMP_LOAD_S}s"
    start_locust ramp "$RAMP_LOAD_S" "$RAMP_USERS" 0.1
    check autoscaled --dashboard "$DASHBOARD" --deployment Router --replicas 2 --timeout "$RAMP_LOAD_S"
    show_status autoscaled-up
    require_load_running "$RAMP_LOAD_S" "the ramp ended before the scale-up was seen; raise RAMP_LOAD_S"
    finish_locust ramp

    log "load over: the autoscaler should return the router to 1 replica"
    check autoscaled --dashboard "$DASHBOARD" --deployment Router --replicas 1 --timeout 300
    show_status autoscaled-down
}

preflight
start_cluster
deploy_and_check_spread
load_and_check_both_nodes_answer
scale_under_load
autoscale_under_ramp
