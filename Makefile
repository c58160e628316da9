# Thin wrapper over CMake, so the two commands a new machine needs are
# `make demo` and `make test`.
BUILD_DIR ?= build
PREFIX ?= /usr/local
JOBS ?= 2

.PHONY: all build deps demo test test-c test-lua install clean format bench

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

install: build
	cmake --install $(BUILD_DIR) --prefix $(PREFIX)

bench: build
	bench/run-all.sh

format:
	clang-format -i engine/*.c engine/*.h tests/c/*.c

clean:
	rm -rf $(BUILD_DIR)
