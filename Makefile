# Tally: `make run` serves on :8080 with ./tally-data, `make test` runs the whole suite.
# Both install the Debian packages they need first (as root, or through sudo).

SWIFT ?= swift
DATA_DIR ?= ./tally-data
PORT ?= 8080
APT_PACKAGES := liblz4-dev libzstd-dev libsqlite3-dev libsimdjson-dev pkg-config python3
# AVX2 when the CPU has it (any x86 since 2013): 3-4x faster scan kernels; baseline otherwise.
TARGET_CPU ?= $(shell grep -qw avx2 /proc/cpuinfo 2>/dev/null && echo haswell || echo x86-64)
RELEASE_FLAGS := -c release -Xswiftc -target-cpu -Xswiftc $(TARGET_CPU) -Xcc -march=$(TARGET_CPU)
CRASH_TEST_KILLS ?= 3

BENCH_EVENTS ?= 10000000
BENCH_DIR ?= /tmp/tally-bench

.PHONY: deps build release run test unit-test crash-test crash-test-long roundtrip-test fuzz-test fuzz-test-long sql-diff-long bench-blocks clean

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build $(RELEASE_FLAGS) --product tally

run: release
	.build/release/tally serve --data-dir $(DATA_DIR) --port $(PORT)

# Tests build in release, with the flags `release` uses: the crash and round-trip tests then
# find .build/release/tally already built, and CI compiles the package once instead of twice
# (a debug build and a release build took 8 and 6.5 of CI's 18 minutes). Tests reach the
# internals they check through `package` access, not `@testable`, which release lacks.
unit-test: deps
	$(SWIFT) build $(RELEASE_FLAGS) --build-tests
	$(SWIFT) test $(RELEASE_FLAGS) --skip-build

crash-test: release
	python3 tools/crash-test --binary .build/release/tally --kills $(CRASH_TEST_KILLS)

crash-test-long: release
	python3 tools/crash-test --binary .build/release/tally --kills 20 --clients 8 --seconds-per-round 3

# The recording in data/ through import, log dump, compact and dump: the same events both ways.
roundtrip-test: release
	python3 tools/blocks-roundtrip --binary .build/release/tally --data data/sample-events.ndjson.zst

# libFuzzer over the SQL lexer, parser and binder: a short run in `make test`, a long one by hand.
FUZZ_SECONDS ?= 30
fuzz-test: deps
	FUZZ_CONFIG=debug tools/fuzz-sql/run $(FUZZ_SECONDS)

fuzz-test-long: deps
	tools/fuzz-sql/run 1800

# The SQL differential suite against SQLite, long mode (CI runs the short mode in unit-test).
SQL_DIFF_QUERIES ?= 200000
sql-diff-long: deps
	$(SWIFT) build $(RELEASE_FLAGS) --build-tests
	TALLY_SQL_DIFF_QUERIES=$(SQL_DIFF_QUERIES) $(SWIFT) test $(RELEASE_FLAGS) --skip-build --filter DifferentialTests

# Storage and compaction figures of the README: generated events, imported, compacted with LZ4
# and (on a copy) with Zstd, then `tally blocks stats`. Needs about 4 GB in $(BENCH_DIR).
bench-blocks: release
	rm -rf $(BENCH_DIR) && mkdir -p $(BENCH_DIR)
	tools/gen-events --events $(BENCH_EVENTS) --days 90 --users 200000 --out $(BENCH_DIR)/events.ndjson
	.build/release/tally import --quiet --data-dir $(BENCH_DIR)/lz4 $(BENCH_DIR)/events.ndjson
	cp -r $(BENCH_DIR)/lz4 $(BENCH_DIR)/zstd
	.build/release/tally compact --quiet --data-dir $(BENCH_DIR)/lz4 --codec lz4 --no-recompress
	.build/release/tally blocks stats --data-dir $(BENCH_DIR)/lz4 --columns-only
	.build/release/tally compact --quiet --data-dir $(BENCH_DIR)/zstd --codec zstd
	.build/release/tally blocks stats --data-dir $(BENCH_DIR)/zstd --columns-only | tail -1

test: unit-test crash-test roundtrip-test fuzz-test

clean:
	rm -rf .build
