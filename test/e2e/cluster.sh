#!/usr/bin/env bash
# cluster.sh up NAME NODES KUBECONFIG | down NAME — a local Kubernetes cluster
# from the binaries in bin/: etcd, kube-apiserver, kube-controller-manager and
# kube-scheduler run as processes, kwok simulates NODES nodes whose pods become
# Running and Ready. State lives under bin/clusters/ (KWOK_WORKDIR), so several
# clusters (tests, demo) can run side by side.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="$root/bin"
export KWOK_WORKDIR="${KWOK_WORKDIR:-$bin/clusters}"
# kwokctl looks for kubectl on PATH and would otherwise try to download one.
export PATH="$bin:$PATH"

cmd="${1:-}"
name="${2:-rollouts}"
case "$cmd" in
up)
	nodes="${3:-4}"
	kubeconfig="${4:-$bin/kubeconfig}"
	block="${LOOPBACK_BLOCK:-1}"
	[[ "$block" =~ ^[0-9]+$ ]] && ((block >= 1 && block <= 254)) ||
		{ echo "cluster.sh: LOOPBACK_BLOCK=$block: want 1 to 254 (127.B.0.0/16)" >&2; exit 2; }
	extra=()
	[[ "${DISABLE_QPS_LIMITS:-}" == "true" ]] && extra+=(--disable-qps-limits)
	# AUDIT_POLICY: the kube-apiserver writes an audit log by this policy to
	# $KWOK_WORKDIR/clusters/NAME/logs/audit.log.
	[[ -n "${AUDIT_POLICY:-}" ]] && extra+=(--kube-audit-policy "$AUDIT_POLICY")
	# PROFILE_CONTROLLER_MANAGER=true: kube-controller-manager serves
	# /debug/pprof on its (loopback) secure port to anyone, as it does
	# /metrics; the benchmarks profile it.
	[[ "${PROFILE_CONTROLLER_MANAGER:-}" == "true" ]] &&
		extra+=(--extra-args "kube-controller-manager=authorization-always-allow-paths=/debug/pprof,/debug/pprof/*")
	if kwokctl get clusters 2>/dev/null | grep -qx "$name"; then
		echo "cluster $name exists; recreating it" >&2
		kwokctl delete cluster --name "$name" >/dev/null 2>&1 || true
	fi
	# kwokctl picks free ports for a cluster's processes and they bind them
	# only once started: clusters created at the same time (test packages run
	# in parallel) could pick the same ones. One creation at a time; the
	# cluster's processes must not inherit the lock.
	mkdir -p "$KWOK_WORKDIR"
	exec 9>"$KWOK_WORKDIR/create.lock"
	flock 9
	# The pods' IPs are loopback addresses (below), which kube-apiserver
	# refuses in Endpoints and EndpointSlices of type IPv4: the controllers
	# that write those could only fail, over and over. test/podsim publishes
	# the EndpointSlices of the clusters whose pods it serves.
	extra+=(--extra-args "kube-controller-manager=controllers=*,-endpoints-controller,-endpointslice-controller,-endpointslice-mirroring-controller")
	kwokctl -v WARN --config "$root/test/e2e/kwokctl.yaml" create cluster --name "$name" --runtime binary \
		--etcd-binary "$bin/etcd" \
		--kube-apiserver-binary "$bin/kube-apiserver" \
		--kube-controller-manager-binary "$bin/kube-controller-manager" \
		--kube-scheduler-binary "$bin/kube-scheduler" \
		--kwok-controller-binary "$bin/kwok" \
		--kubeconfig "$kubeconfig.tmp" --wait 120s "${extra[@]}" >&2 9>&-
	flock -u 9
	# kwokctl merges into the given kubeconfig; write our own single-cluster file.
	cp "$KWOK_WORKDIR/clusters/$name/kubeconfig.yaml" "$kubeconfig"
	rm -f "$kubeconfig.tmp"
	# Loopback only (DESIGN §15): in the block 127.B.0.0/16 (B is
	# LOOPBACK_BLOCK, default 1) node i gets podCIDR 127.B.i.0/24, from which
	# kwok gives its pods their IPs, and InternalIP 127.B.255.(i+1), which its
	# host-network pods would get. Nothing the cluster hands out is routable
	# off this machine, so test/podsim can serve every pod on its own IP; a
	# process that serves a cluster's pods claims its block first
	# (test/loopback), so two such clusters never share an address. A /24
	# holds a node's 110 pods; kwok's pool reuses freed addresses first.
	((nodes <= 255)) || { echo "cluster.sh: at most 255 nodes fit a loopback block" >&2; exit 2; }
	kwokctl -v WARN scale node --name "$name" --replicas "$nodes" \
		--param ".podCIDRs=[\"127.$block.0.0/24\"]" --param ".nodeIPs=[\"127.$block.255.1\"]" >&2
	kubectl --kubeconfig "$kubeconfig" wait --for=condition=Ready nodes --all --timeout=60s >&2
	echo "cluster $name is up with $nodes nodes; kubeconfig: $kubeconfig" >&2
	;;
down)
	kwokctl -v WARN delete cluster --name "$name" >&2 || true
	;;
*)
	echo "usage: $0 up NAME [NODES] [KUBECONFIG] | down NAME" >&2
	exit 2
	;;
esac
