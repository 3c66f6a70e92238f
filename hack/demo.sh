#!/usr/bin/env bash
# demo.sh up | down — the newcomer demo on a local kwok cluster (make demo,
# make demo-down).
#
# up starts, in the background:
#   - a cluster whose four nodes are simulated by kwok (test/e2e/cluster.sh),
#     on a loopback block: every pod IP is an address of 127.N.0.0/16;
#   - the data plane (bin/demoplane, from hack/demoplane): the pod simulator
#     (test/podsim), which makes every Running pod answer HTTP on its IP as
#     its image's tag says (tags with "bad" fail 30 % of requests); Traefik,
#     the Gateway API implementation, with the Gateway edge on
#     127.0.0.1:18092; and a steady load of 40 requests a second through it
#     to web.example, whose split it logs every 5 seconds;
#   - Prometheus (bin/prometheus) scraping Traefik's metrics every second;
#   - a webhook receiver (bin/demohook, from hack/demohook) on
#     127.0.0.1:18096, which logs each request to notifications.log, and
#     the notification settings that send to it
#     (manifests/examples/notifications/demo.yaml);
#   - the controller (bin/rollouts) with exactly the permissions of its
#     ServiceAccount (impersonation) and that Prometheus as its default;
# then deploys manifests/examples/demo.yaml, releases a good version the
# analysis promotes and a bad one it aborts, showing `kubectl rollouts get
# rollout web`, the measured split of the requests and the notifications
# received at each milestone.
# Running it again starts over. down stops all of it. Needs `make tools
# build` first (make demo does that).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/bin"
state="$bin/demo"
cluster=demo
image=registry.example/web
export KUBECONFIG="$state/kubeconfig"
export PATH="$bin:$PATH"
# Where kwokctl keeps its clusters; test/e2e/cluster.sh uses the same.
export KWOK_WORKDIR="${KWOK_WORKDIR:-$bin/clusters}"

# Local addresses of the processes the demo starts.
controller_metrics=127.0.0.1:18090
controller_probes=127.0.0.1:18091
traefik_web=127.0.0.1:18092
prometheus_addr=127.0.0.1:18093
traefik_metrics=127.0.0.1:18094
traefik_api=127.0.0.1:18095
# The webhook receiver; manifests/examples/notifications/demo.yaml names it.
webhook=127.0.0.1:18096
# The route's host, and the load demoplane sends to it.
host=web.example
rate=40

step() { printf '\n==> %s\n' "$*"; }

# show CMD...: print CMD as typed at a prompt, quoting the arguments that
# need it, then run it.
show() {
	local arg line="$"
	for arg in "$@"; do
		if [[ "$arg" =~ ^[[:alnum:]_./:=@%+,-]+$ ]]; then
			line+=" $arg"
		else
			line+=" '$arg'"
		fi
	done
	echo "$line"
	"$@"
}

fail() {
	echo "demo: $*" >&2
	echo "demo: make demo-down stops what was started" >&2
	exit 1
}

# wait_until DESCRIPTION SECONDS CMD...: poll CMD every half second until
# it succeeds; fail after SECONDS, or as soon as a process the demo started
# has exited, with its log.
wait_until() {
	local what="$1" deadline=$((SECONDS + $2)) name
	shift 2
	until "$@" >/dev/null 2>&1; do
		if name="$(exited)"; then
			fail "$name exited while waiting for $what; the end of $state/$name.log:"$'\n'"$(tail -n 20 "$state/$name.log")"
		fi
		((SECONDS < deadline)) || fail "timed out waiting for $what; logs in $state/"
		sleep 0.5
	done
}

# exited: print the name of a process the demo started that has exited,
# if any.
exited() {
	local pidfile
	for pidfile in "$state"/*.pid; do
		[[ -e "$pidfile" ]] || continue
		if ! kill -0 "$(<"$pidfile")" 2>/dev/null; then
			basename "$pidfile" .pid
			return 0
		fi
	done
	return 1
}

# start NAME ARGS...: run bin/NAME in the background, with its output in
# $state/NAME.log and its pid in $state/NAME.pid.
start() {
	local name="$1"
	shift
	nohup "$bin/$name" "$@" </dev/null >"$state/$name.log" 2>&1 &
	echo $! >"$state/$name.pid"
}

# stop NAME: stop the process start NAME began, if it still runs (and the
# pid has not been reused by another program).
stop() {
	local pidfile="$state/$1.pid" pid
	[[ -f "$pidfile" ]] || return 0
	pid="$(<"$pidfile")"
	if [[ "$(command_line "$pid")" == "$bin/$1 "* ]]; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.2
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$pidfile"
}

# command_line PID: the command line of a running process.
command_line() {
	if [[ -r "/proc/$1/cmdline" ]]; then
		tr '\0' ' ' <"/proc/$1/cmdline"
	else
		ps -o args= -p "$1" 2>/dev/null || true
	fi
}

stop_processes() {
	stop rollouts
	stop demohook
	stop prometheus
	# demoplane stops the Traefik it started; traefik.pid, which it writes,
	# is for a demoplane that could not.
	stop demoplane
	stop traefik
}

# listening ADDR: whether something accepts connections on host:port.
listening() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

check_ports() {
	local addr
	for addr in "$controller_metrics" "$controller_probes" "$traefik_web" "$prometheus_addr" "$traefik_metrics" "$traefik_api" "$webhook"; do
		if listening "$addr"; then
			fail "$addr is in use; the demo needs 127.0.0.1:18090-18096 (make demo-down stops a previous demo)"
		fi
	done
}

# claim_addresses: start demoplane, which claims a block of loopback
# addresses for the cluster's pods (test/loopback: the e2e tests on this
# machine claim theirs the same way) and waits for the cluster.
claim_addresses() {
	start demoplane --root "$root" --state "$state" --kubeconfig "$state/demoplane.kubeconfig" \
		--block-file "$state/block" --host "$host" --rate "$rate" \
		--traefik-port "${traefik_web##*:}" --traefik-metrics-port "${traefik_metrics##*:}" --traefik-api-port "${traefik_api##*:}"
	wait_until "demoplane to claim a loopback block (demoplane.log)" 30 test -s "$state/block"
}

start_cluster() {
	local block
	block="$(<"$state/block")"
	step "Starting a local cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and 4 kwok nodes giving pods IPs in 127.$block.0.0/16"
	LOOPBACK_BLOCK="$block" "$root/test/e2e/cluster.sh" up "$cluster" 4 "$KUBECONFIG" 2>"$state/cluster.log" ||
		fail "starting the cluster failed:"$'\n'"$(<"$state/cluster.log")"
	tail -n 1 "$state/cluster.log"

	step "Installing CRDs, RBAC and the controller Deployment (kubectl apply --server-side -k manifests), and the Gateway API CRDs"
	kubectl apply --server-side -k "$root/manifests" >/dev/null
	# The Gateway API CRDs from the module the controller is built with, as
	# a gateway install would provide them (its standard channel; the
	# ValidatingAdmissionPolicy beside them is left out).
	local gateway_api crds=()
	gateway_api="$(cd "$root" && go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api)"
	for crd in "$gateway_api"/config/crd/standard/gateway.networking.k8s.io_*.yaml; do
		[[ "$crd" == *_vap_* ]] || crds+=(-f "$crd")
	done
	kubectl apply --server-side "${crds[@]}" >/dev/null
	kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
	# kwok nodes run no containers: the Deployment's pod would only be
	# simulated. The real controller runs on this machine instead.
	kubectl -n rollouts-system scale deployment rollouts-controller --replicas=0 >/dev/null
}

# data_plane_ready: whether demoplane has started its parts.
data_plane_ready() { grep -q 'Data plane ready' "$state/demoplane.log"; }

start_data_plane() {
	step "Starting the data plane (bin/demoplane): the pod simulator, Traefik with the Gateway edge on $traefik_web, $rate requests/s to $host"
	echo "Every Running pod answers HTTP on its IP (127.*); images whose tag has \"bad\" fail 30 % of requests."
	# The cluster is up: demoplane, waiting for its kubeconfig, goes on.
	ln -s "$KUBECONFIG" "$state/demoplane.kubeconfig"
	wait_until "the data plane (demoplane.log)" 120 data_plane_ready
	grep 'Data plane ready' "$state/demoplane.log"
}

# scraped: whether Prometheus has scraped Traefik successfully.
scraped() {
	curl -fsS "http://$prometheus_addr/api/v1/query" --data-urlencode 'query=up{job="traefik"} == 1' |
		grep -q '"result":\[{'
}

start_prometheus() {
	step "Starting Prometheus on $prometheus_addr, scraping Traefik's metrics every second"
	cat >"$state/prometheus.yml" <<YAML
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
- job_name: traefik
  static_configs: [{targets: ["$traefik_metrics"]}]
YAML
	start prometheus --config.file="$state/prometheus.yml" --storage.tsdb.path="$state/prometheus" \
		--web.listen-address="$prometheus_addr" --log.level=warn
	wait_until "Prometheus to scrape Traefik (prometheus.log)" 60 scraped
}

# reports: how many splits demoplane has logged.
reports() { grep -c ' last 5s: ' "$state/demoplane.log" || true; }

# reported N: whether demoplane has logged N splits.
reported() { (($(reports) >= $1)); }

# split N: wait for N more splits of the load, then show the last. One is
# enough when the traffic has been steady for 5 seconds; two cover 5
# seconds wholly after now.
split() {
	wait_until "the load's split (demoplane.log)" 30 reported $(($(reports) + $1))
	echo "The requests to $host through Traefik ($rate/s, bin/demoplane):"
	grep ' last 5s: ' "$state/demoplane.log" | tail -n 1
}

start_notifications() {
	step "Starting a webhook receiver (bin/demohook) on $webhook; the controller's notifications go to it"
	start demohook --address "$webhook" --log "$state/notifications.log"
	wait_until "the webhook receiver (demohook.log)" 30 listening "$webhook"
	echo "The settings define the webhook service demo and send each message as the body of a POST to $webhook/<template>;"
	echo "the Rollout web below subscribes to 7 triggers with notifications.rollouts.kubeseed.io/subscribe.<trigger>.demo annotations."
	show kubectl apply -f "$root/manifests/examples/notifications/demo.yaml"
}

# notified PATH: whether the webhook receiver has logged a request to PATH.
notified() { grep -q "^[0-9:]* [A-Z]* $1 " "$state/notifications.log"; }

# notifications PATH...: wait until the webhook receiver has had a request
# to each PATH, then print the requests it logged since the last call.
shown=0
notifications() {
	local path total
	for path in "$@"; do
		wait_until "the notification to $webhook$path (rollouts.log, demohook.log)" 60 notified "$path"
	done
	# Whole lines only: the count first, then those lines.
	total=$(($(wc -l <"$state/notifications.log")))
	echo "Notifications received by the local webhook (bin/demohook, $state/notifications.log):"
	sed -n "$((shown + 1)),${total}p" "$state/notifications.log"
	shown=$total
}

start_controller() {
	step "Starting bin/rollouts as system:serviceaccount:rollouts-system:rollouts-controller"
	local user
	cp "$KUBECONFIG" "$state/controller.kubeconfig"
	user="$(kubectl config view -o jsonpath='{.users[0].name}')"
	kubectl --kubeconfig "$state/controller.kubeconfig" config set-credentials "$user" \
		--as=system:serviceaccount:rollouts-system:rollouts-controller >/dev/null
	start rollouts --kubeconfig "$state/controller.kubeconfig" \
		--leader-elect --leader-election-namespace rollouts-system \
		--metrics-bind-address "$controller_metrics" --metrics-secure=false --health-probe-bind-address "$controller_probes" \
		--prometheus-address "http://$prometheus_addr"
	wait_until "the controller to be ready (rollouts.log)" 60 curl -fsS "http://$controller_probes/readyz"
	echo "ready: /readyz on $controller_probes, /metrics on $controller_metrics, default Prometheus http://$prometheus_addr"
}

# phase_is PHASE: whether the Rollout's status.phase is PHASE.
phase_is() { [[ "$(kubectl get rollout web -o jsonpath='{.status.phase}')" == "$1" ]]; }

# measured: whether the analysis step of the update in progress has a
# successful measurement.
measured() {
	local hash run successful
	hash="$(kubectl get rollout web -o jsonpath='{.status.currentPodHash}')"
	run="$(kubectl get rollout web -o jsonpath='{.status.canary.currentStepAnalysisRun.name}')"
	[[ -n "$hash" && "$run" == "web-$hash-"* ]] || return 1
	successful="$(kubectl get analysisrun "$run" -o jsonpath='{.status.metricResults[0].successful}')"
	((${successful:-0} > 0))
}

deploy() {
	step "Deploying manifests/examples/demo.yaml: Services, the HTTPRoute web (host $host), the error-rate AnalysisTemplate, Rollout web (4 × web:1)"
	echo "steps: setWeight 25 → analysis error-rate (Traefik's 5xx share of web-canary: 3 measurements, 5s apart, each < 5 %) → setWeight 50 → pause 10s"
	show kubectl apply -f "$root/manifests/examples/demo.yaml"
	wait_until "Rollout web to be Healthy" 120 phase_is Healthy
	show kubectl rollouts get rollout web
	echo
	split 2
}

release_good() {
	step "Releasing web:2, a good version (no errors)"
	show kubectl rollouts set image web web=$image:2
	wait_until "the first measurement of web:2" 120 measured
	echo
	echo "One pod of 4 runs web:2 and the route sends it 25 % of the requests; the analysis measures their error rate:"
	show kubectl rollouts get rollout web
	echo
	split 1
	echo
	show kubectl rollouts status web --timeout 3m || fail "web:2 was not released; logs in $state/"
	show kubectl rollouts get rollout web
	echo
	split 2
	echo
	notifications /rollout-updated /rollout-completed
}

release_bad() {
	step "Releasing web:3-bad, a bad version (30 % errors)"
	show kubectl rollouts set image web web=$image:3-bad
	# status exits 1 when the update is aborted, which is what we expect.
	local code=0
	show kubectl rollouts status web --timeout 3m || code=$?
	((code == 1)) || fail "kubectl rollouts status exited $code; want 1 (aborted)"
	echo "(exit code 1: aborted)"
	echo
	echo "The analysis measured web:3-bad's errors and aborted the update: weight 0 at once, every request back on web:2;"
	echo "the canary's pod goes 5 seconds later (abortScaleDownDelaySeconds)."
	show kubectl rollouts get rollout web
	echo
	show kubectl get analysisruns -o custom-columns='NAME:.metadata.name,PHASE:.status.phase,MEASURED:.status.metricResults[0].measurements[*].value'
	echo
	show kubectl rollouts list rollouts
	echo
	split 2
	echo "The last 5 seconds in which web:3-bad answered requests:"
	grep ' last 5s: .*web:3-bad' "$state/demoplane.log" | tail -n 1
	echo
	notifications /analysis-run-failed /rollout-aborted
}

explore() {
	cat <<MSG

==> Done in ${SECONDS}s. The analysis promoted web:2 and aborted web:3-bad. Everything keeps running; explore:

  export KUBECONFIG=$KUBECONFIG PATH=$bin:\$PATH
  kubectl rollouts get rollout web -w       # the tree, redrawn on every change (Ctrl-C to leave)
  kubectl rollouts list rollouts
  kubectl rollouts set image web web=$image:4   # another release: tags with "bad" fail
  kubectl rollouts promote web              # skip the current step or pause (--full: all of them)
  kubectl rollouts abort web                # back to the stable version at once
  kubectl rollouts retry web                # run an aborted update again
  kubectl rollouts status web               # wait; exit code 0 Healthy, 1 aborted
  kubectl get analysisruns                  # ar: every measurement in .status.metricResults
  kubectl get httproute web -o jsonpath='{.spec.rules[0].backendRefs}'   # the weights the controller writes
  curl -i -H 'Host: $host' http://$traefik_web/   # through Traefik to a pod: X-Pod and X-Image name it
  grep ' last 5s: ' $state/demoplane.log | tail   # the split of the load, every 5 seconds
  tail -f $state/notifications.log   # the notifications the local webhook receives
  kubectl rollouts notifications template get   # the templates, 7 of them replaced by the demo's settings
  curl -s http://$traefik_metrics/metrics | grep traefik_service_requests_total
  Prometheus UI: http://$prometheus_addr, query (requests/s by Service and code):
    sum by (service, code) (rate(traefik_service_requests_total{service=~"default-web-.*"}[10s]))

Logs: $state/{rollouts,demoplane,traefik,podsim,prometheus,demohook}.log; failed requests: $state/traefik-access.log;
the $(($(wc -l <"$state/notifications.log"))) notifications received: $state/notifications.log.
Stop everything with: make demo-down
MSG
}

up() {
	stop_processes
	rm -rf "$state"
	mkdir -p "$state"
	check_ports
	(cd "$root" && go build -o "$bin/" ./hack/demoplane ./hack/demohook)
	claim_addresses
	start_cluster
	start_data_plane
	start_prometheus
	start_notifications
	start_controller
	deploy
	release_good
	release_bad
	explore
}

down() {
	stop_processes
	if kwokctl get clusters 2>/dev/null | grep -qx "$cluster"; then
		"$root/test/e2e/cluster.sh" down "$cluster"
	fi
	rm -rf "$state"
	echo "demo stopped"
}

case "${1:-}" in
up) up ;;
down) down ;;
*)
	echo "usage: $0 up|down" >&2
	exit 2
	;;
esac
