#!/usr/bin/env bash
# demo.sh up | down — the newcomer demo on a local kwok cluster.
#
# up: starts a cluster with simulated nodes, installs the CRDs and RBAC from
# manifests/, runs bin/rollouts on this machine with exactly the permissions of
# its ServiceAccount (impersonation), deploys an example Rollout, and prints
# what to try next.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/bin"
state="$bin/demo"
kubeconfig="$state/kubeconfig"
export PATH="$bin:$PATH"
k() { kubectl --kubeconfig "$kubeconfig" "$@"; }

# progress prints one line per change of the Rollout: phase, step, and the
# ReplicaSets as image spec/ready.
progress() {
	local ro rs
	ro="$(k get rollout web -o jsonpath='{.status.phase} {.status.currentStepIndex}' 2>/dev/null || true)"
	rs="$(k get rs -l app=web -o jsonpath='{range .items[*]}{.spec.template.spec.containers[0].image} {.spec.replicas}/{.status.readyReplicas}{"\n"}{end}' 2>/dev/null |
		awk '$2 != "0/" && $2 != "0/0" {sub(/\/$/, "/0", $2); sub(/.*\//, "", $1); print $1" "$2}' | sort | paste -sd, - | sed 's/,/, /g')"
	echo "$ro | $rs"
}

# watch_until STATUS [SIZES]: print progress until the rollout's status line
# starts with STATUS (and the ReplicaSets read SIZES).
watch_until() {
	local want="$1" sizes="${2:-}" last="" line
	for _ in $(seq 1 300); do
		line="$(progress)"
		if [[ "$line" != "$last" ]]; then
			printf '    %s  %s\n' "$(date +%T)" "$line"
			last="$line"
		fi
		if [[ "$line" == "$want"* && ( -z "$sizes" || "$line" == *"| $sizes" ) ]]; then
			return 0
		fi
		sleep 0.5
	done
	echo "timed out waiting for $want; see $state/controller.log" >&2
	exit 1
}

set_image() {
	k patch rollout web --type=merge -p "{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"web\",\"image\":\"registry.example/$1\"}]}}}}" >/dev/null
}

stop_controller() {
	if [[ -f "$state/controller.pid" ]]; then
		local pid
		pid="$(cat "$state/controller.pid")"
		if kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid"
			for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
		fi
		rm -f "$state/controller.pid"
	fi
}

case "${1:-}" in
up)
	stop_controller
	mkdir -p "$state"
	echo "==> Starting a local cluster (etcd, kube-apiserver, controller-manager, scheduler, 4 kwok nodes)"
	"$root/test/e2e/cluster.sh" up demo 4 "$kubeconfig"

	echo "==> Installing CRDs, RBAC and the controller Deployment (kubectl apply --server-side -k manifests)"
	k apply --server-side -k "$root/manifests" >/dev/null
	k wait --for=condition=Established crd --all --timeout=60s >/dev/null
	# kwok nodes run no containers: the Deployment's pods are simulated. The
	# real controller runs on this machine, as the Deployment's ServiceAccount.
	k -n rollouts-system scale deployment rollouts-controller --replicas=0 >/dev/null

	echo "==> Starting bin/rollouts as system:serviceaccount:rollouts-system:rollouts-controller"
	cp "$kubeconfig" "$state/controller.kubeconfig"
	user="$(k config view -o jsonpath='{.users[0].name}')"
	kubectl --kubeconfig "$state/controller.kubeconfig" config set-credentials "$user" \
		--as=system:serviceaccount:rollouts-system:rollouts-controller >/dev/null
	nohup "$bin/rollouts" --kubeconfig "$state/controller.kubeconfig" \
		--leader-elect --leader-election-namespace rollouts-system \
		--metrics-bind-address 127.0.0.1:18090 --health-probe-bind-address 127.0.0.1:18091 \
		>"$state/controller.log" 2>&1 &
	echo $! >"$state/controller.pid"
	for _ in $(seq 1 150); do
		curl -fsS http://127.0.0.1:18091/readyz >/dev/null 2>&1 && break
		sleep 0.2
	done
	curl -fsS http://127.0.0.1:18091/readyz >/dev/null || { echo "controller not ready; see $state/controller.log" >&2; exit 1; }
	echo "    ready: /readyz on 127.0.0.1:18091, /metrics on 127.0.0.1:18090, log in $state/controller.log"

	echo "==> Deploying the example Rollout (manifests/examples/demo.yaml): 4 replicas, steps setWeight 25 → pause 5s → setWeight 50 → pause"
	k apply -f "$root/manifests/examples/demo.yaml" >/dev/null
	watch_until "Healthy"

	echo
	echo "==> Releasing web:2 (kubectl patch rollout web ... image web:2)"
	set_image web:2
	watch_until "Paused 3"
	echo "==> Promoting past the indefinite pause (annotation rollouts.kubeseed.io/promote)"
	k annotate --overwrite rollout web rollouts.kubeseed.io/promote="$(date -u +%Y-%m-%dT%H:%M:%SZ)" >/dev/null
	watch_until "Healthy"

	echo
	echo "==> Releasing web:3, then aborting it at the first pause (annotation rollouts.kubeseed.io/abort)"
	set_image web:3
	watch_until "Paused 1"
	k annotate --overwrite rollout web rollouts.kubeseed.io/abort="$(date -u +%Y-%m-%dT%H:%M:%SZ)" >/dev/null
	watch_until "Degraded" "web:2 4/4"
	k get rollout web

	cat <<MSG

The canary went out step by step, was promoted, and the next release was
aborted back to the stable version. Explore:

  export KUBECONFIG=$kubeconfig PATH=$bin:\$PATH
  kubectl get rollouts,replicasets,pods          # ro for short
  kubectl get rollout web -o yaml                # status: phase, step, conditions, lastHandled
  kubectl get events --field-selector involvedObject.name=web
  kubectl annotate --overwrite rollout web rollouts.kubeseed.io/retry=again   # retry web:3
  kubectl rollouts version
  curl -s 127.0.0.1:18090/metrics | grep controller_runtime_reconcile_total

Controller log: $state/controller.log. Stop everything with: make demo-down
MSG
	;;
down)
	stop_controller
	"$root/test/e2e/cluster.sh" down demo
	rm -rf "$state"
	echo "demo stopped"
	;;
*)
	echo "usage: $0 up|down" >&2
	exit 2
	;;
esac
