#!/usr/bin/env bash
# demo.sh up | down — the newcomer demo on a local kwok cluster (make demo,
# make demo-down).
#
# up starts, in the background:
#   - a cluster whose four nodes are simulated by kwok (test/e2e/cluster.sh);
#   - the traffic simulator (test/trafficsim), standing in for the app the
#     simulated pods don't run: every Ready pod answers 100 requests a
#     second, images whose tag contains "bad" fail 30 % of them, others 1 %;
#   - Prometheus (bin/prometheus) scraping it every second;
#   - the controller (bin/rollouts) with exactly the permissions of its
#     ServiceAccount (impersonation) and that Prometheus as its default;
# then deploys manifests/examples/demo.yaml, releases a good version the
# analysis promotes and a bad one it aborts, showing `kubectl rollouts get
# rollout web` at each milestone. Running it again starts over. down stops
# all of it. Needs `make tools build` first (make demo does that).
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
traffic_addr=127.0.0.1:18092
prometheus_addr=127.0.0.1:18093

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
# it succeeds; fail after SECONDS.
wait_until() {
	local what="$1" deadline=$((SECONDS + $2))
	shift 2
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || fail "timed out waiting for $what; logs in $state/"
		sleep 0.5
	done
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
	stop trafficsim
	stop prometheus
}

# listening ADDR: whether something accepts connections on host:port.
listening() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

check_ports() {
	local addr
	for addr in "$controller_metrics" "$controller_probes" "$traffic_addr" "$prometheus_addr"; do
		if listening "$addr"; then
			fail "$addr is in use; the demo needs 127.0.0.1:18090-18093 (make demo-down stops a previous demo)"
		fi
	done
}

start_cluster() {
	step "Starting a local cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and 4 kwok nodes"
	"$root/test/e2e/cluster.sh" up "$cluster" 4 "$KUBECONFIG" 2>"$state/cluster.log" ||
		fail "starting the cluster failed:"$'\n'"$(<"$state/cluster.log")"
	tail -n 1 "$state/cluster.log"

	step "Installing CRDs, RBAC and the controller Deployment (kubectl apply --server-side -k manifests)"
	kubectl apply --server-side -k "$root/manifests" >/dev/null
	kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
	# kwok nodes run no containers: the Deployment's pod would only be
	# simulated. The real controller runs on this machine instead.
	kubectl -n rollouts-system scale deployment rollouts-controller --replicas=0 >/dev/null
}

start_traffic() {
	step "Starting the traffic simulator on $traffic_addr: tags with \"bad\" fail 30 % of requests, others 1 %"
	start trafficsim --kubeconfig "$KUBECONFIG" --listen "$traffic_addr" --namespace default \
		--rule '*bad*:errors=30%' --rule '*:errors=1%'
	wait_until "the traffic simulator (trafficsim.log)" 60 curl -fsS "http://$traffic_addr/metrics"
}

# scraped: whether Prometheus has scraped the simulator successfully.
scraped() {
	curl -fsS "http://$prometheus_addr/api/v1/query" --data-urlencode 'query=up{job="trafficsim"} == 1' |
		grep -q '"result":\[{'
}

start_prometheus() {
	step "Starting Prometheus on $prometheus_addr, scraping the simulator every second"
	cat >"$state/prometheus.yml" <<YAML
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
- job_name: trafficsim
  static_configs: [{targets: ["$traffic_addr"]}]
YAML
	start prometheus --config.file="$state/prometheus.yml" --storage.tsdb.path="$state/prometheus" \
		--web.listen-address="$prometheus_addr" --log.level=warn
	wait_until "Prometheus to scrape the simulator (prometheus.log)" 60 scraped
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
	step "Deploying manifests/examples/demo.yaml: Services, the error-rate AnalysisTemplate, Rollout web (4 × web:1)"
	echo "steps: setWeight 25 → analysis error-rate (3 measurements, 5s apart, each < 5 %) → setWeight 50 → pause 10s"
	show kubectl apply -f "$root/manifests/examples/demo.yaml"
	wait_until "Rollout web to be Healthy" 120 phase_is Healthy
	show kubectl rollouts get rollout web
}

release_good() {
	step "Releasing web:2, a good version (1 % errors)"
	show kubectl rollouts set image web web=$image:2
	wait_until "the first measurement of web:2" 120 measured
	echo
	echo "One pod of 4 runs web:2 (weight 25); the analysis measures its error rate:"
	show kubectl rollouts get rollout web
	echo
	show kubectl rollouts status web --timeout 3m || fail "web:2 was not released; logs in $state/"
	show kubectl rollouts get rollout web
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
	echo "The analysis failed on the first measurement and aborted the update: weight 0, web:2 back to 4 pods."
	show kubectl rollouts get rollout web
	echo
	show kubectl get analysisruns -o custom-columns='NAME:.metadata.name,PHASE:.status.phase,MEASURED:.status.metricResults[0].measurements[*].value'
	echo
	show kubectl rollouts list rollouts
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
  curl -s $traffic_addr/metrics | grep demo_http_requests_total
  Prometheus UI: http://$prometheus_addr  (query: demo_http_requests_total)

Logs: $state/{rollouts,trafficsim,prometheus}.log. Stop everything with: make demo-down
MSG
}

up() {
	stop_processes
	rm -rf "$state"
	mkdir -p "$state"
	check_ports
	(cd "$root" && go build -o "$bin/trafficsim" ./test/trafficsim/cmd/trafficsim)
	start_cluster
	start_traffic
	start_prometheus
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
