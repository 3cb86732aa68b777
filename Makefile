# quorumd: the README's two commands are `make demo` and `make test`.
CARGO ?= cargo

.PHONY: demo test bench lint deps build torture

deps:
	@./scripts/ensure-deps.sh

build:
	$(CARGO) build --release --bin quorumd

## Three local redis-server processes and the service with its API on http://127.0.0.1:8379
demo: deps
	$(CARGO) run --release --bin quorumd -- demo

## Unit and integration tests against real redis-server processes.
test: deps
	$(CARGO) test --workspace --all-targets

## Lints the CI gate does not run (formatting, clippy with warnings as errors).
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Benchmarks: ratios against a baseline measured in the same run.
bench: deps
	$(CARGO) bench --bench http_kv --bench sync --bench locks --bench crdt --bench resp --bench direct --bench cluster

## The long fault-injection run: SEEDS seeds per workload, report in target/torture/report.md.
SEEDS ?= 50
torture: deps
	rm -f target/torture/*.md
	FAULT_SEEDS=$(SEEDS) $(CARGO) test --release --test faults -- --nocapture
	cat $$(ls target/torture/*.md | grep -v '/report.md$$') > target/torture/report.md.new
	mv target/torture/report.md.new target/torture/report.md
	@echo "report: target/torture/report.md"
