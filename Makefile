# rollouts — progressive delivery for Kubernetes.
# `make help` lists the targets. Everything a target needs is built by the
# targets themselves; the only prerequisite is Go.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
.DEFAULT_GOAL := help

ROOT      := $(CURDIR)
BIN       := $(ROOT)/bin
VERSION   ?= $(shell ./hack/version.sh 2>/dev/null || echo v0.0.0-dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null | cut -c1-7 || echo unknown)
# The controller image's repository (make image, make release).
IMAGE     ?= ghcr.io/kubeseed/rollouts
LDFLAGS   := -s -w -X github.com/kubeseed/rollouts/pkg/version.Version=$(VERSION) -X github.com/kubeseed/rollouts/pkg/version.Commit=$(COMMIT)
NODES     ?= 4
CLUSTER   ?= rollouts
KUBECONFIG_FILE := $(BIN)/kubeconfig
TEST_FLAGS ?=
# Integration and e2e tests sit behind build tags so `go test ./...` stays a
# fast, cluster-free unit run.
TEST_TAGS := integration,e2e,bench,soak

CONTROL_PLANE := etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok kwokctl
# The data plane of the e2e tests and the demo: the Gateway API proxy.
DATA_PLANE := traefik
ENVTEST_TOOLS := etcd kube-apiserver prometheus
export KUBEBUILDER_ASSETS := $(BIN)
export PATH := $(BIN):$(PATH)

##@ General

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} \
	  /^[a-zA-Z0-9_-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Build

.PHONY: build
build: ## Build bin/rollouts and bin/kubectl-rollouts (static, as released).
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/rollouts ./cmd/rollouts
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/kubectl-rollouts ./cmd/kubectl-rollouts

.PHONY: install-plugin
install-plugin: ## Install kubectl-rollouts into $(go env GOPATH)/bin.
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o "$$(go env GOPATH)/bin/kubectl-rollouts" ./cmd/kubectl-rollouts
	@echo "installed $$(go env GOPATH)/bin/kubectl-rollouts; with that directory on PATH, run: kubectl rollouts version --client"

##@ Release

# PLATFORMS are the controller image's platforms.
PLATFORMS ?= linux/amd64,linux/arm64

.PHONY: image
image: ## Build the controller image (no Docker) for PLATFORMS: OCI layout bin/image/oci and a docker-loadable archive.
	go run ./hack/release image -image $(IMAGE) -platforms $(PLATFORMS)

.PHONY: image-push
image-push: ## Push the image built by make image to REGISTRY=host/repo, tagged with the version.
	go run ./hack/release push -to "$(REGISTRY)"

.PHONY: release
release: ## Build the release into bin/release: install manifests pinned by digest, plugin archives, krew manifest, chart, image archive, checksums.
	go run ./hack/release release -image $(IMAGE) -platforms $(PLATFORMS)

.PHONY: generate
generate: ## Regenerate deepcopy code and CRDs (manifests/crds, charts/rollouts/crds), the RBAC copies (namespaced Role, chart rules) and the CLI reference (docs/cli).
	@./test/tools/install.sh controller-gen
	$(BIN)/controller-gen object paths=./pkg/apis/...
	$(BIN)/controller-gen crd:generateEmbeddedObjectMeta=true,maxDescLen=0 paths=./pkg/apis/... output:crd:artifacts:config=manifests/crds
	$(BIN)/controller-gen crd:generateEmbeddedObjectMeta=true,maxDescLen=0 paths=./pkg/apis/... output:crd:artifacts:config=charts/rollouts/crds
	go run ./hack/genrbac
	go run ./hack/gendocs docs/cli

GENERATED := pkg/apis manifests/crds manifests/namespaced charts/rollouts/crds charts/rollouts/files docs/cli

.PHONY: verify
verify: generate ## Fail when generated files are stale or gofmt / go vet complain.
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	go vet -tags $(TEST_TAGS) ./...
	@go mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }
	@git diff --exit-code -- $(GENERATED) || { echo "generated files are stale: run make generate and commit"; exit 1; }
	@test -z "$$(git ls-files --others --exclude-standard -- $(GENERATED))" || { echo "untracked generated files:"; git ls-files --others --exclude-standard -- $(GENERATED); exit 1; }

.PHONY: lint
lint: ## Run golangci-lint (built from its module).
	@./test/tools/install.sh golangci-lint
	$(BIN)/golangci-lint run --allow-parallel-runners ./...

##@ Test environment

.PHONY: tools
tools: ## Build the control plane, kwok, Prometheus and Traefik into bin/ (cached per version).
	@./test/tools/install.sh $(CONTROL_PLANE) prometheus $(DATA_PLANE)

.PHONY: cluster-up
cluster-up: tools ## Start a local kwok cluster with NODES simulated nodes; kubeconfig in bin/kubeconfig.
	@./test/e2e/cluster.sh up $(CLUSTER) $(NODES) $(KUBECONFIG_FILE)

.PHONY: cluster-down
cluster-down: ## Stop and delete the local kwok cluster.
	@./test/e2e/cluster.sh down $(CLUSTER)

##@ Demo

.PHONY: demo
demo: tools build ## Local cluster, Traefik with real requests, controller and Prometheus; a release the analysis promotes and one it aborts, notified to a local webhook.
	@./hack/demo.sh up

.PHONY: demo-down
demo-down: ## Stop the demo: controller, data plane (pod simulator, Traefik, load), Prometheus, webhook receiver and cluster.
	@./hack/demo.sh down

##@ Test

.PHONY: test
test: verify lint test-unit test-integration test-e2e ## Everything CI runs: verify, lint, unit, integration (envtest) and e2e (kwok) tests.

.PHONY: test-unit
test-unit: ## Unit tests (no cluster).
	go test $(TEST_FLAGS) ./...

.PHONY: test-integration
test-integration: ## Integration tests against a real kube-apiserver (envtest).
	@./test/tools/install.sh $(ENVTEST_TOOLS)
	go test $(TEST_FLAGS) -tags integration -run Integration ./...

# FUZZTIME is how long make fuzz runs each of FUZZ_TARGETS (package:FuzzName).
FUZZTIME ?= 30s
# FUZZ_FLAGS are extra go test flags, e.g. -parallel=1 on a busy machine.
FUZZ_FLAGS ?=
FUZZ_TARGETS := \
	./pkg/rollout:FuzzPlanner \
	./pkg/rollout:FuzzReplicaMath \
	./pkg/analysis:FuzzConditions \
	./pkg/analysis:FuzzWebJSONPath \
	./pkg/analysis/judge:FuzzJudge \
	./internal/jsonpatch:FuzzDiff

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME, one after the other; stop at the first crasher (written to the package's testdata/fuzz).
	@for target in $(FUZZ_TARGETS); do \
	  pkg=$${target%%:*}; name=$${target##*:}; \
	  echo "== $$name ($$pkg) for $(FUZZTIME)"; \
	  go test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $(FUZZ_FLAGS) $$pkg || exit 1; \
	done

.PHONY: clean
clean: ## Remove bin/ (the tool cache in ~/.cache/kubeseed-rollouts stays).
	-./test/e2e/cluster.sh down demo >/dev/null 2>&1
	rm -rf $(BIN)

.PHONY: chromium
chromium: ## Install Debian's chromium for the dashboard's browser tests (apt-get, as root; nothing when it is there).
	@test -x /usr/bin/chromium || { apt-get update && apt-get install -y chromium; }

.PHONY: test-e2e
test-e2e: tools build chromium ## End-to-end tests on a local kwok cluster (and the dashboard in headless chromium).
	@./test/tools/install.sh helm
	go test $(TEST_FLAGS) -tags e2e -count=1 -timeout 20m ./test/e2e/... ./test/release/...

.PHONY: screenshots
screenshots: tools build chromium ## Pictures of the dashboard for README.md and docs/dashboard.md (docs/images/), taken by its browser tests.
	@mkdir -p docs/images
	DASHBOARD_SCREENSHOTS=$(CURDIR)/docs/images go test -tags e2e -count=1 -timeout 15m -run '^TestDashboard' ./test/e2e/

##@ Chaos soak

# SOAK_DURATION and SOAK_ROLLOUTS size the soak; SEED replays a run (a
# failing run prints its `make soak SEED=…` line). The test bounds itself
# (SOAK_DURATION plus an hour at most), hence no go test timeout.
SOAK_DURATION ?= 20m
SOAK_ROLLOUTS ?= 50
SEED ?=

.PHONY: soak
soak: tools build ## Seeded chaos soak (SOAK_DURATION, SOAK_ROLLOUTS, SEED= to replay): controller kills, API and metric faults, invariants at every event; summary in bin/soak/summary.md.
	SOAK_SEED=$(SEED) SOAK_DURATION=$(SOAK_DURATION) SOAK_ROLLOUTS=$(SOAK_ROLLOUTS) go test -tags soak -count=1 -timeout 0 -v ./test/soak/

##@ Benchmarks

# BENCH_TIME is go test -benchtime of the envtest benchmarks (batches of
# AnalysisRuns). The scale benchmarks on the kwok cluster take BENCH_SCALE
# (Rollout counts, default 100,1000,5000), BENCH_REPS (repetitions, default 3),
# BENCH_TRIALS (iterations of the latency scenarios, default 10) and
# BENCH_DASHBOARD_ROLLOUTS (the Rollouts the dashboard shows, default 1000). The
# data plane's time to effect takes BENCH_DATAPLANE_UPDATES (canary updates
# of four weight changes each, default 2).
BENCH_TIME ?= 5x

.PHONY: bench
bench: tools build chromium ## Benchmarks: planner micro-benchmarks, envtest, a weight's time to effect through Traefik, the controller and the dashboard at scale on a kwok cluster; results in bin/bench/.
	@mkdir -p $(BIN)/bench
	go test -run '^$$' -bench . -benchmem ./pkg/rollout/ | tee $(BIN)/bench/micro.txt
	go test -tags bench -run '^$$' -bench . -benchtime $(BENCH_TIME) -timeout 30m ./test/bench/
	go test -tags bench -run '^$$' -bench . -benchtime 1x -timeout 10m ./test/bench/dataplane/
	go test -tags bench -run '^$$' -bench '^Benchmark(ScaleSideBySide|ScaleStatusPatch|SingleRollout|AnalysisAbort|Dashboard)$$' -benchtime 1x -timeout 240m ./test/bench/scale/
	@cat $(BIN)/bench/results.md $(BIN)/bench/dataplane.md $(BIN)/bench/scale.md

# BENCH_SCALE only sizes the cluster here (it takes the larger of it and
# BENCH_DASHBOARD_ROLLOUTS): not for the 5000 Rollouts of make bench.
.PHONY: bench-dashboard
bench-dashboard: tools build chromium ## The dashboard over BENCH_DASHBOARD_ROLLOUTS (default 1000) Rollouts in headless chromium: list render time, live update, the server's RSS; results in bin/bench/scale.md.
	BENCH_SCALE=100 go test -tags bench -run '^$$' -bench '^BenchmarkDashboard$$' -benchtime 1x -timeout 60m ./test/bench/scale/
	@cat $(BIN)/bench/scale.md
