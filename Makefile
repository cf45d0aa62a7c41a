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
EFFICIENCY_RATES ?= 50,200,1000,5000
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

.PHONY: lint-openapi
lint-openapi: ## lint api/openapi.yaml with Redocly CLI (npm, from e2e's lockfile)
	cd e2e && npm ci --no-audit --no-fund && npx --no-install redocly lint --config ../redocly.yaml ../api/openapi.yaml

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME each (default 30s; the FuzzAcceptedIsStorable ones need Postgres, as make test)
	scripts/fuzz.sh ./pkg/events FuzzDecode $(FUZZTIME)
	scripts/fuzz.sh ./pkg/events FuzzCheckStorable $(FUZZTIME)
	scripts/fuzz.sh ./internal/projector FuzzAcceptedIsStorable $(FUZZTIME)
	scripts/fuzz.sh ./internal/notifier FuzzAcceptedIsStorable $(FUZZTIME)
	scripts/fuzz.sh ./pkg/events FuzzSubject $(FUZZTIME)
	scripts/fuzz.sh ./pkg/events FuzzParseStoredFastAgreesWithStrict $(FUZZTIME)
	scripts/fuzz.sh ./internal/ingest FuzzParseBody $(FUZZTIME)
	scripts/fuzz.sh ./internal/ingest FuzzParseFastAgreesWithStrict $(FUZZTIME)
	scripts/fuzz.sh ./pkg/events FuzzFastEventScan $(FUZZTIME)
	scripts/fuzz.sh ./pkg/events FuzzAppendInput $(FUZZTIME)
	scripts/fuzz.sh ./pkg/webhook FuzzVerify $(FUZZTIME)
	scripts/fuzz.sh ./internal/projector FuzzCursor $(FUZZTIME)
	scripts/fuzz.sh ./internal/projector FuzzParseQuery $(FUZZTIME)
	scripts/fuzz.sh ./internal/projector FuzzDecodeParents $(FUZZTIME)
	scripts/fuzz.sh ./internal/safehttp FuzzValidateURL $(FUZZTIME)
	scripts/fuzz.sh ./internal/safehttp FuzzParseNumericHost $(FUZZTIME)
	scripts/fuzz.sh ./internal/secretbox FuzzOpen $(FUZZTIME)
	scripts/fuzz.sh ./internal/notifier FuzzRules $(FUZZTIME)
	scripts/fuzz.sh ./internal/notifier FuzzInboxCursor $(FUZZTIME)
	scripts/fuzz.sh ./internal/render FuzzParse $(FUZZTIME)
	scripts/fuzz.sh ./internal/browser FuzzVerify $(FUZZTIME)

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
bench: bench-ingest bench-projector bench-webhooker bench-registry bench-notifier bench-pipeline ## run every benchmark (BENCHMARKS.md says how to read them)

.PHONY: bench-ingest
bench-ingest: tools ## HTTP ingest vs raw nats.go publish baselines, fsync always
	BENCH_COUNT=$(BENCHCOUNT) scripts/bench.sh

.PHONY: bench-ids
bench-ids: tools ## batched ingest without and with the idempotency table (ingest.event_ids), alternating in one run
	BENCH_COUNT=$(BENCHCOUNT) scripts/bench.sh ids

.PHONY: bench-ab
bench-ab: tools ## ingest of BASE (default main) against this tree's, alternating in one run: single-event and batched next to the raw atomic batch
	BENCH_COUNT=$(BENCHCOUNT) scripts/bench.sh ab $(or $(BASE),main)

.PHONY: bench-auth
bench-auth: tools ## NATS authentication and permissions on vs off in one run: batched ingest, and projection of AUTH_BENCH_EVENTS (default 200000)
	BENCH_COUNT=$(BENCHCOUNT) scripts/bench.sh auth
	PROJECTOR_BENCH_EVENTS=$(AUTH_BENCH_EVENTS) $(GO) test ./internal/projector -run '^$$' -bench '^BenchmarkProjectionAuth$$' -benchtime $(BENCHCOUNT)x -timeout 60m

.PHONY: bench-projector
bench-projector: tools ## projection of a 1M-event stream vs raw COPY; timeline page latency
	$(GO) test ./internal/projector -run '^$$' -bench '^BenchmarkProjection$$' -benchtime 3x -timeout 60m

.PHONY: bench-webhooker
bench-webhooker: tools ## deliveries/s vs a raw HTTP client; endpoints answering in 50 ms; slow-endpoint isolation; first-attempt latency
	$(GO) test ./internal/webhooker -run '^$$' -bench '^Benchmark(Fanout1to1(000)?$$|FanoutSlowReceivers|SlowEndpoint|FirstAttempt)' -benchtime 3x -timeout 60m

.PHONY: bench-fanout
bench-fanout: tools ## webhook fan-out 1 -> 1/1,000/10,000/100,000 endpoints: deliveries/s, CPU/delivery vs the durable floor (raw HTTP + COPY + JetStream); medians of 3 runs, <= 60 min
	@mkdir -p bench-results
	$(GO) test ./internal/webhooker -run '^$$' -bench '^BenchmarkFanout1to(1|1000|10000|100000)$$' -benchtime 1x -count 3 -timeout 60m | tee bench-results/fanout.txt
	@awk -f scripts/metric-medians.awk bench-results/fanout.txt

.PHONY: bench-webhook-ab
bench-webhook-ab: tools ## webhooker benchmarks of git revision BASE against this tree, alternating processes (BASE, BENCHES, ROUNDS, BENCHTIME, OUT)
	scripts/bench-webhook-ab.sh

.PHONY: bench-webhook-limit
bench-webhook-limit: tools ## the adaptive limit on attempts in flight and first attempts up to 1,000 endpoints vs the settings before them, alternating processes (ROUNDS, BENCHTIME, BENCHES)
	scripts/bench-webhook-limit.sh

.PHONY: bench-registry
bench-registry: ## webhook endpoint registry at 100k endpoints (load, match, change) vs a plain map and the old scan; starts nothing
	@mkdir -p bench-results
	$(GO) test ./internal/webhooker/endpoint -run '^$$' -bench '^BenchmarkRegistry' -benchmem -count $(BENCHCOUNT) -timeout 30m | tee bench-results/registry.txt
	@awk -f scripts/medians.awk bench-results/registry.txt

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

.PHONY: bench-efficiency
bench-efficiency: tools build ## CPU per event of each process (services, nats-server, Postgres backends) at 50/200/1,000/5,000 events/s, and the raw floor; ~15 min, medians of 3 runs
	@mkdir -p bench-results
	bin/eventline bench efficiency --rates $(EFFICIENCY_RATES) --duration 20s --runs 3 --json bench-results/efficiency.json | tee bench-results/efficiency.md

.PHONY: bench-devcpu
bench-devcpu: build ## CPU per event of eventline dev (one process) and its Postgres at 50 and 200 events/s, 8 clients; ~3 min
	for rate in 50 200; do scripts/devcpu.sh bin/eventline $$rate 20; done

.PHONY: bench-pipeline
bench-pipeline: ## the whole pipeline (eventline bench): 1,000 events/s, p50/p99 from 202 to timeline and to first webhook
	$(GO) build -o bin/eventline ./cmd/eventline
	for i in 1 2 3; do bin/eventline bench --rate 1000 --duration 30s --burst 10s; done
