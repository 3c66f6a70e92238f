#!/usr/bin/env bash
# install.sh NAME... — build the test-environment binaries from their Go
# modules and link them into bin/.
#
# Each binary is built once per (tool version, Go version) into a per-user cache
# outside the checkout, so a fresh clone on the same machine (CI) links the
# cached binary instead of spending ten minutes rebuilding the control plane.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="$root/bin"
cache="${ROLLOUTS_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubeseed-rollouts/tools}"
gover="$(go env GOVERSION)"
mkdir -p "$bin" "$cache"

# modversion DIR MODULE: the version of MODULE that DIR's go.mod selects.
modversion() { (cd "$1" && go list -m -f '{{.Version}}' "$2"); }

# build NAME DIR VERSION PACKAGE [LDFLAGS]: build PACKAGE inside module DIR as
# NAME, reusing the cached binary for VERSION when there is one.
build() {
	local name="$1" dir="$2" version="$3" pkg="$4" ldflags="${5:-}"
	local key
	key="$(printf '%s\n' "$version" "$gover" "$ldflags" | sha256sum | cut -c1-12)"
	local out="$cache/$name-$version-$key/$name"
	if [[ ! -x "$out" ]]; then
		echo ">> building $name $version ($pkg)" >&2
		local tmp="$out.tmp.$$"
		mkdir -p "$(dirname "$out")"
		(cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" -o "$tmp" "$pkg")
		mv -f "$tmp" "$out"
	fi
	ln -sfn "$out" "$bin/$name"
}

kube_ldflags() {
	local v="$1" major minor
	major="$(echo "${v#v}" | cut -d. -f1)"
	minor="$(echo "${v#v}" | cut -d. -f2)"
	local flags=""
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		flags+=" -X $p.gitVersion=$v -X $p.gitMajor=$major -X $p.gitMinor=$minor"
		flags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
	done
	echo "$flags"
}

install_one() {
	case "$1" in
	etcd)
		local v
		v="$(modversion "$here" go.etcd.io/etcd/server/v3)"
		build etcd "$here" "$v" ./etcd \
			"-X go.etcd.io/etcd/api/v3/version.GitSHA=$v"
		;;
	kube-apiserver | kube-controller-manager | kube-scheduler | kubectl)
		local v
		v="$(modversion "$here" k8s.io/kubernetes)"
		build "$1" "$here" "$v" "k8s.io/kubernetes/cmd/$1" "$(kube_ldflags "$v")"
		;;
	kwok | kwokctl)
		local v
		v="$(modversion "$here/kwok" sigs.k8s.io/kwok)"
		build "$1" "$here/kwok" "$v" "sigs.k8s.io/kwok/cmd/$1" \
			"-X sigs.k8s.io/kwok/pkg/consts.Version=${v#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$(modversion "$here" k8s.io/kubernetes | sed s/^v//)"
		;;
	prometheus)
		local v
		v="$(modversion "$here/prometheus" github.com/prometheus/prometheus)"
		# Prometheus tags its releases v0.3xx.y for Go and v3.xx.y for users.
		local minor user
		minor="$(echo "$v" | cut -d. -f2)"
		user="${minor:0:1}.${minor:1}.${v##*.}"
		build prometheus "$here/prometheus" "$v" github.com/prometheus/prometheus/cmd/prometheus \
			"-X github.com/prometheus/common/version.Version=$user -X github.com/prometheus/common/version.Branch=release -X github.com/prometheus/common/version.Revision=$v"
		;;
	traefik)
		local v
		v="$(modversion "$here/traefik" github.com/traefik/traefik/v3)"
		# Version stays visible in `traefik version`; the harness turns off the
		# update check that a non-dev version would otherwise make.
		build traefik "$here/traefik" "$v" github.com/traefik/traefik/v3/cmd/traefik \
			"-X github.com/traefik/traefik/v3/pkg/version.Version=$v -X github.com/traefik/traefik/v3/pkg/version.BuildDate=1970-01-01T00:00:00Z"
		;;
	golangci-lint)
		local v
		v="$(modversion "$here/lint" github.com/golangci/golangci-lint/v2)"
		build golangci-lint "$here/lint" "$v" github.com/golangci/golangci-lint/v2/cmd/golangci-lint \
			"-X main.version=${v#v}"
		;;
	controller-gen)
		local v
		v="$(modversion "$here/codegen" sigs.k8s.io/controller-tools)"
		build controller-gen "$here/codegen" "$v" sigs.k8s.io/controller-tools/cmd/controller-gen \
			"-X sigs.k8s.io/controller-tools/pkg/version.version=$v"
		;;
	helm)
		local v
		v="$(modversion "$here/helm" helm.sh/helm/v4)"
		build helm "$here/helm" "$v" helm.sh/helm/v4/cmd/helm \
			"-X helm.sh/helm/v4/internal/version.version=$v -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
		;;
	*)
		echo "install.sh: unknown tool $1" >&2
		exit 2
		;;
	esac
}

for t in "$@"; do install_one "$t"; done
