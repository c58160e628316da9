# Thin wrapper over CMake, so the two commands a new machine needs are
# `make demo` and `make test`.
BUILD_DIR ?= build
PREFIX ?= /usr/local
JOBS ?= 2

.PHONY: all build deps demo test test-asan fuzz faults test-c test-lua install clean format bench mutants package

all: build

deps:
	scripts/install-deps

$(BUILD_DIR)/CMakeCache.txt:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_INSTALL_PREFIX=$(PREFIX)

build: $(BUILD_DIR)/CMakeCache.txt
	cmake --build $(BUILD_DIR) -j $(JOBS)

demo: deps
	$(MAKE) build
	$(BUILD_DIR)/atlas-run --scenario eu-west-1-outage --yes playbooks/dr_region_outage.lua

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure

# The whole suite again, on a build instrumented with ASan and UBSan (clang).
# Sanitizer reports go to files under build-asan/sanitizer/, so a report from
# a child process whose output a test swallows still fails the run.
ASAN_DIR ?= build-asan
test-asan:
	cmake -S . -B $(ASAN_DIR) -DCMAKE_C_COMPILER=clang -DATLAS_SANITIZE=ON
	cmake --build $(ASAN_DIR) -j $(JOBS)
	scripts/run-sanitized $(ASAN_DIR)

# Each libFuzzer harness of tests/fuzz/ for FUZZ_SECONDS, from its committed seeds; new
# inputs go to build-fuzz/corpus/, crashes to build-fuzz/artifacts/ (scripts/fuzz).
FUZZ_DIR ?= build-fuzz
FUZZ_SECONDS ?= 60
# A seeded mutation run over the safety-critical Lua (scripts/mutants.lua):
# the share of mutants the unit and mock suites kill. Not part of `make test`.
MUTANTS ?= 40
MUTANT_SEED ?= 1
mutants: build
	MUTANTS=$(MUTANTS) MUTANT_SEED=$(MUTANT_SEED) $(BUILD_DIR)/atlas-run -e 'dofile("scripts/mutants.lua")'

fuzz:
	cmake -S . -B $(FUZZ_DIR) -DCMAKE_C_COMPILER=clang -DATLAS_FUZZ=ON
	cmake --build $(FUZZ_DIR) --target fuzzers -j $(JOBS)
	scripts/fuzz $(FUZZ_DIR) $(FUZZ_SECONDS)

# The seeded fault campaign (docs/faults.md): failover then recovery against moto behind
# tests/support/fault_proxy.py, FAULT_SEEDS seeds at FAULT_RATE, each end state checked with
# boto3. FAULT_SEED=N runs that one seed alone.
FAULT_SEEDS ?= 100
FAULT_RATE ?= 0.2
FAULT_SEED ?=
faults: build
	FAULT_SEEDS=$(FAULT_SEEDS) FAULT_RATE=$(FAULT_RATE) FAULT_SEED=$(FAULT_SEED) \
		ATLAS_RUN=$(BUILD_DIR)/atlas-run $(BUILD_DIR)/atlas-run test tests/faults

install: build
	cmake --install $(BUILD_DIR) --prefix $(PREFIX)

# A .deb in build/ (CPack): binary, loadable modules, playbooks, docs, man page, bash completion.
package: build
	cd $(BUILD_DIR) && cpack -G DEB

bench: build
	bench/run-all.sh

format:
	clang-format -i engine/*.c engine/*.h tests/c/*.c

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(FUZZ_DIR)
