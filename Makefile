# eventline — `make help` lists the targets.
SHELL := /usr/bin/env bash
GO ?= go
GOBIN := $(shell $(GO) env GOPATH)/bin
NATS_SERVER_VERSION := v2.15.2
GOLANGCI_VERSION := v2.15.0
FUZZTIME ?= 30s
BENCHCOUNT ?= 5
AUTH_BENCH_EVENTS ?= 200000
RUN ?= .
RELIABILITY_RESULTS ?= reliability-results.jsonl

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F":.*## " "{printf \"  %-16s %s\\n\", \$$1, \$$2}"

.PHONY: tools
tools: ## install what the tests need: nats-server v2.15.2 (real-process tests, benchmarks)
	@test -x $(GOBIN)/nats-server && $(GOBIN)/nats-server --version | grep -q '$(NATS_SERVER_VERSION)' || \
		$(GO) install github.com/nats-io/nats-server/v2@$(NATS_SERVER_VERSION)

.PHONY: build
build: ## build every binary into ./bin
	$(GO) build -o bin/ ./cmd/...

.PHONY: test
test: tools ## run every test (needs Postgres: DATABASE_URL, localhost:5432 or local initdb)
	$(GO) test -race -count=1 -timeout 12m ./...

.PHONY: test-browser
test-browser: ## browser tests in real Chromium (e2e/; needs Debian's chromium and npm): builds eventline, starts eventline dev on free ports, runs node --test
	$(GO) build -o bin/eventline ./cmd/eventline
	cd e2e && npm ci --no-audit --no-fund && EVENTLINE_BIN=$(abspath bin/eventline) node --test --test-concurrency=1

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME each (default 30s; the FuzzAcceptedIsStorable ones need Postgres, as make test)
	$(GO) test ./pkg/events -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/events -run '^$$' -fuzz '^FuzzCheckStorable$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/projector -run '^$$' -fuzz '^FuzzAcceptedIsStorable$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/notifier -run '^$$' -fuzz '^FuzzAcceptedIsStorable$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/events -run '^$$' -fuzz '^FuzzSubject$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/ingest -run '^$$' -fuzz '^FuzzParseBody$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/ingest -run '^$$' -fuzz '^FuzzParseFastAgreesWithStrict$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/webhook -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/projector -run '^$$' -fuzz '^FuzzCursor$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/projector -run '^$$' -fuzz '^FuzzParseQuery$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/safehttp -run '^$$' -fuzz '^FuzzValidateURL$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/safehttp -run '^$$' -fuzz '^FuzzParseNumericHost$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/secretbox -run '^$$' -fuzz '^FuzzOpen$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/notifier -run '^$$' -fuzz '^FuzzRules$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/notifier -run '^$$' -fuzz '^FuzzInboxCursor$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/render -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/browser -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME)

.PHONY: reliability
reliability: tools ## fault-injection suite, ~12-14 min (RUN=TestName for one row); writes $(RELIABILITY_RESULTS) and the table of RELIABILITY.md
	@if [ '$(RUN)' = '.' ]; then rm -f $(RELIABILITY_RESULTS); fi
	@start=$$(date +%s); \
	RELIABILITY_RESULTS=$(abspath $(RELIABILITY_RESULTS)) $(GO) test -tags reliability -count=1 -timeout 25m -run '$(RUN)' -v ./internal/reliability/; \
	status=$$?; echo "make reliability: $$(( $$(date +%s) - start )) s"; \
	$(MAKE) --no-print-directory reliability-table; exit $$status

.PHONY: reliability-table
reliability-table: ## render $(RELIABILITY_RESULTS) into the table of RELIABILITY.md
	$(GO) run scripts/reliability_table.go $(RELIABILITY_RESULTS) RELIABILITY.md

.PHONY: lint
lint: ## gofmt, go vet and golangci-lint
	@test -x $(GOBIN)/golangci-lint || $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GOBIN)/golangci-lint run ./...

.PHONY: bench
bench: bench-ingest bench-projector bench-webhooker bench-notifier bench-pipeline ## run every benchmark (BENCHMARKS.md says how to read them)

.PHONY: bench-ingest
bench-ingest: tools ## HTTP ingest vs raw nats.go publish baselines, fsync always
	BENCH_COUNT=$(BENCHCOUNT) scripts/bench.sh

.PHONY: bench-ids
bench-ids: tools ## batched ingest without and with the idempotency table (ingest.event_ids), alternating in one run
	BENCH_COUNT=$(BENCHCOUNT) scripts/bench.sh ids

.PHONY: bench-auth
bench-auth: tools ## NATS authentication and permissions on vs off in one run: batched ingest, and projection of AUTH_BENCH_EVENTS (default 200000)
	BENCH_COUNT=$(BENCHCOUNT) scripts/bench.sh auth
	PROJECTOR_BENCH_EVENTS=$(AUTH_BENCH_EVENTS) $(GO) test ./internal/projector -run '^$$' -bench '^BenchmarkProjectionAuth$$' -benchtime $(BENCHCOUNT)x -timeout 60m

.PHONY: bench-projector
bench-projector: tools ## projection of a 1M-event stream vs raw COPY; timeline page latency
	$(GO) test ./internal/projector -run '^$$' -bench '^BenchmarkProjection$$' -benchtime 3x -timeout 60m

.PHONY: bench-webhooker
bench-webhooker: tools ## deliveries/s vs a raw HTTP client; slow-endpoint isolation; first-attempt latency
	$(GO) test ./internal/webhooker -run '^$$' -bench . -benchtime 3x -timeout 60m

.PHONY: image
image: ## build the container image of every binary (eventline:local, as docker-compose.yml uses)
	docker build -t eventline:local .
.PHONY: bench-notifier
bench-notifier: tools ## notifications/s vs a raw batched upsert (10 watchers per card); inbox read latency at 1M notifications
	$(GO) test ./internal/notifier -run '^$$' -bench '^BenchmarkNotify$$' -benchtime 5x -timeout 60m
	$(GO) test ./internal/notifier -run '^$$' -bench '^BenchmarkInboxRead$$' -benchtime 3x -timeout 60m

.PHONY: run
run: tools ## run eventline locally: nats-server (fsync always), migrations, a dev key, ingest/projector/webhooker/notifier
	scripts/run.sh

.PHONY: bench-pipeline
bench-pipeline: ## the whole pipeline (eventline bench): 1,000 events/s, p50/p99 from 202 to timeline and to first webhook
	$(GO) build -o bin/eventline ./cmd/eventline
	for i in 1 2 3; do bin/eventline bench --rate 1000 --duration 30s --burst 10s; done
