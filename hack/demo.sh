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

	echo "==> Deploying the example Rollout (manifests/examples/demo.yaml)"
	k apply -f "$root/manifests/examples/demo.yaml"
	k get rollouts,services
	echo
	k rollout status deployment/plain-web --timeout=60s
	k get pods -o wide

	cat <<MSG

The cluster, the CRDs and the controller are running. Try:

  export KUBECONFIG=$kubeconfig PATH=$bin:\$PATH
  kubectl get rollouts                          # ro for short; Desired/Phase/Step/Weight columns
  kubectl explain rollout.spec.strategy.canary  # the API, from the installed CRD
  kubectl apply -f manifests/examples/          # every example is accepted by the CEL rules
  kubectl rollouts version                      # the plugin finds the controller Deployment
  curl -s 127.0.0.1:18090/metrics | grep controller_runtime_reconcile_total

Note: the Rollout reconciler (canary and blue-green steps) is not implemented
yet; the controller watches Rollouts but does not act on them. Stop everything
with: make demo-down
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
