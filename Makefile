# wakepush — see README.md. Every target runs from the repo root with go.work.
SHELL := /bin/bash
GO ?= go
BUF_VERSION := v1.75.0
# The user cache (as package chdb's CacheDir): the ClickHouse library and the pinned buf.
WAKEPUSH_CACHE_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/wakepush
BUF := $(WAKEPUSH_CACHE_DIR)/bin/buf-$(BUF_VERSION)
MODULES := schemas services loadtest loadtest/mocks deploy/local deploy/monitoring deploy/images
PKGS := $(foreach m,$(MODULES),./$(m)/...)
GOTEST_FLAGS ?= -race -shuffle=on -timeout 20m

.PHONY: all build test test-short fuzz run demo-push loadtest loadtest-max chaos bench-sender bench-sender-memory proto monitoring images lint fmt clickhouse-lib jaeger kube-apiserver test-k8s clean-data help

all: build

help: ## list targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

build: ## build every binary into bin/
	$(GO) build -o bin/ ./services/ingest ./services/coalescer ./services/sender ./services/recorder ./services/wakepushctl \
		./loadtest/cmd/apns-mock ./loadtest/cmd/fcm-mock ./loadtest/cmd/loadtest ./loadtest/cmd/loadtest-mocks ./loadtest/cmd/sender-bench ./deploy/local/cmd/wakepush-dev ./deploy/local/cmd/kafka-broker ./deploy/local/cmd/chdb-server

test: clickhouse-lib jaeger ## unit + integration tests (kfake, ClickHouse, APNs mock, Prosody), with -race
	$(GO) vet $(PKGS)
	$(GO) test $(GOTEST_FLAGS) $(PKGS)

# OCI images without a Docker engine (deploy/images, README "Images"): one OCI image layout per
# image in .data/images/<name>/ and a docker-load tarball .data/images/<name>.tar. The version,
# revision and creation time come from git (override: make images IMAGES_FLAGS='-version 0.1.0').
IMAGES_FLAGS ?=
images: ## OCI images of ingest, coalescer, sender, recorder, wakepushctl into .data/images/ (no Docker; reproducible)
	$(GO) run ./deploy/images/cmd/mkimage -out .data/images -tar $(IMAGES_FLAGS)

test-short: ## unit tests only
	$(GO) test -short -race $(PKGS)

# Every fuzz target, as package:Func. Budgets are execution counts, not durations: a duration
# -fuzztime races the Go 1.26 fuzz coordinator's deadline on a busy machine (golang/go#75804)
# and fails with "context deadline exceeded" and no crasher.
FUZZ_TARGETS := services/ingest/xep0357:FuzzParsePublish services/ingest/xep0357:FuzzHandlePublish \
	services/ingest/xmpp:FuzzStreamReaderMatchesDecoder services/ingest/xmpp:FuzzFastReaderMatchesDecoder services/ingest/adhoc:FuzzCommand \
	services/ingest/httpapi:FuzzAPI services/recorder:FuzzRecordRow services/coalescer:FuzzDecodeEvent \
	services/sender/internal/dedup:FuzzAcceptedWakeID services/sender/internal/apns:FuzzMarshalPayload \
	services/sender/internal/engine:FuzzDecodeWake
FUZZ_EXECS ?= 1500000

fuzz: ## run every fuzz target for FUZZ_EXECS inputs each (default 1.5M, 16.5M in all); crashers land in testdata/fuzz
	@mkdir -p .data/fuzz; summary=.data/fuzz/summary.tsv; printf 'target\texecs\tseconds\tresult\n' > $$summary; fail=0; \
	for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; start=$$(date +%s); \
	  if $(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZ_EXECS)x -timeout 2h ./$$pkg > .data/fuzz/$$fn.log 2>&1; then r=ok; else r=FAIL; fail=1; fi; \
	  execs=$$(grep -o 'execs: [0-9]*' .data/fuzz/$$fn.log | tail -1 | cut -d' ' -f2); \
	  printf '%s\t%s\t%s\t%s\n' "$$pkg:$$fn" "$${execs:-0}" "$$(( $$(date +%s) - start ))" "$$r" | tee -a $$summary; \
	  [ $$r = ok ] || tail -20 .data/fuzz/$$fn.log; \
	done; awk -F'\t' 'NR>1 {n+=$$2} END {print "fuzz: " n " inputs in all"}' $$summary; exit $$fail

run: ## start the whole pipeline locally (kfake, ClickHouse, APNs mock, four services); Ctrl-C stops it
	$(GO) build -o .data/bin/wakepush-dev ./deploy/local/cmd/wakepush-dev && exec .data/bin/wakepush-dev

demo-push: ## with `make run` up: register a fake iOS device, publish once, show the push and the ClickHouse rows
	$(GO) run ./services/wakepushctl demo

loadtest: ## run the standard load-test scenario on its own stack (~3 min); report in loadtest/reports/
	$(GO) run ./loadtest/cmd/loadtest -scenario loadtest/scenarios/standard.yaml

loadtest-max: ## find the highest sustained publish rate (ramp; 2-5 min); report in loadtest/reports/
	$(GO) run ./loadtest/cmd/loadtest -scenario loadtest/scenarios/find-max.yaml

chaos: ## chaos under sustained load: kill every service, freeze/restart Kafka, stop ClickHouse, APNs storms (~15 min)
	$(GO) run ./loadtest/cmd/loadtest -scenario loadtest/scenarios/chaos.yaml

# CPU per APNs push of the sender binary next to a bare apns2 client loop (loadtest/README.md,
# "Sender vs bare apns2"), e.g. make bench-sender SENDER_BENCH_FLAGS='-runs 5 -conns 2 -json /tmp/sb.json'.
SENDER_BENCH_FLAGS ?=
bench-sender: ## sender vs bare apns2, CPU per push: 100k devices, 3 alternating runs, markdown table (~2 min)
	$(GO) run ./loadtest/cmd/sender-bench $(SENDER_BENCH_FLAGS)

# Memory per sender instance by registered devices and instance count, and the rebalance check
# (loadtest/README.md, "Memory per instance"), e.g.
# make bench-sender-memory SENDER_MEMORY_FLAGS='-devices 1000000,10000000 -json /tmp/sm.json'.
SENDER_MEMORY_FLAGS ?=
bench-sender-memory: ## memory per sender instance: 1M devices on 1, 2, 4 instances + a rebalance check, markdown table (~3 min)
	$(GO) run ./loadtest/cmd/sender-memory $(SENDER_MEMORY_FLAGS)

proto: $(BUF) ## regenerate schemas/gen with the pinned buf and protoc-gen-go; record gen/generated.sum
	cd schemas && $(BUF) generate
	WAKEPUSH_CACHE_DIR='$(WAKEPUSH_CACHE_DIR)' $(GO) test -count=1 -run '^TestGeneratedCodeIsFresh$$' ./schemas -args -update -buf-version=$(BUF_VERSION)

# The pinned buf, built once (~4 min) into the user cache, outside the repository.
$(BUF):
	mkdir -p '$(@D)'
	tmp=$$(mktemp -d) && GOBIN=$$tmp $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION) && mv $$tmp/buf '$@' && rmdir $$tmp

monitoring: ## regenerate the Grafana dashboards and the rule file copy in the Helm chart (docs/monitoring.md)
	$(GO) run ./deploy/monitoring/cmd/monitoring-gen

clickhouse-lib: ## download and verify the pinned libchdb into the user cache (once)
	$(GO) run ./deploy/local/cmd/chdb-server -fetch-only

# Jaeger v1.75.0 from its own module deploy/tools/jaeger (outside go.work), built with GOWORK=off
# and nice -n 10 into the user cache; `make run` starts it when it is there (docs/tracing.md).
jaeger: ## build the pinned Jaeger all-in-one into the user cache once (~8 min cold, 2.2 GB; then instant)
	$(GO) run ./deploy/local/cmd/jaeger-build

# kube-apiserver v1.37.2 from its own tools module deploy/tools/kube-apiserver (outside go.work:
# k8s.io/kubernetes pins ~200 modules), built with GOWORK=off and nice -n 10 into the user cache
# once (cold: ~10 min on an idle 2-core machine, 27 min measured under a load of 10-25; 2.9 GB
# RSS, 171 MB binary). The chart tests (test-k8s) run it with Debian's etcd (apt-get install
# etcd-server). Concurrent builds wait on a lock beside the binary.
KUBE_VERSION := v1.37.2
KUBE_APISERVER := $(WAKEPUSH_CACHE_DIR)/bin/kube-apiserver-$(KUBE_VERSION)
KUBE_LDFLAGS := $(foreach p,k8s.io/component-base/version k8s.io/client-go/pkg/version,-X $(p).gitVersion=$(KUBE_VERSION) -X $(p).gitMajor=1 -X $(p).gitMinor=37)

kube-apiserver: $(KUBE_APISERVER) ## build the pinned kube-apiserver into the user cache once (~10 min cold; then instant)

$(KUBE_APISERVER):
	mkdir -p '$(@D)'
	@grep -qE '^\s*k8s.io/kubernetes $(KUBE_VERSION)( |$$)' deploy/tools/kube-apiserver/go.mod || \
		{ echo "deploy/tools/kube-apiserver/go.mod does not require k8s.io/kubernetes $(KUBE_VERSION)"; exit 1; }
	flock '$@.lock' bash -c 'set -e; [ -x "$$1" ] && exit 0; \
		cd deploy/tools/kube-apiserver && GOWORK=off nice -n 10 $(GO) build -ldflags "$(KUBE_LDFLAGS)" -o "$$1.tmp" k8s.io/kubernetes/cmd/kube-apiserver && \
		mv "$$1.tmp" "$$1"' _ '$@'
	'$@' --version

# The chart tests (deploy/helm, its own module outside go.work): render + lint + strict decode +
# CRD schema/CEL checks, then a real install into etcd + kube-apiserver per values file. No -race:
# the code under test is the chart, not concurrent Go.
test-k8s: $(KUBE_APISERVER) ## Helm chart tests: render, lint, strict decode, CRD/CEL, install into a real kube-apiserver
	@test -z "$$(gofmt -l deploy/helm)" || (gofmt -l deploy/helm; exit 1)
	cd deploy/helm && GOWORK=off $(GO) vet ./... && KUBE_APISERVER='$(KUBE_APISERVER)' GOWORK=off $(GO) test -count=1 -timeout 20m ./...

fmt: ## gofmt every module
	gofmt -w $(MODULES)

lint: ## gofmt check + go vet
	@test -z "$$(gofmt -l $(MODULES))" || (gofmt -l $(MODULES); exit 1)
	$(GO) vet $(PKGS)

clean-data: ## delete the local stack's state (.data/)
	rm -rf .data
