# Makefile - wraps CMake (as neovim's does). `make run` and `make test` are the README's commands.
BUILD ?= build
SANITIZE ?= none
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)
PREFIX ?= /usr/local
CMAKE_FLAGS ?=

.PHONY: all deps build run test test-sanitize bench fuzz install format format-check clean

all: build

deps:
	@./scripts/deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DPETAL_SANITIZE=$(SANITIZE) \
	  -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

run: deps build
	$(BUILD)/bin/petal sim $(BUILD)/plugins/quickstart --num-supernodes 10

test: deps build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

# The unit suites again, under a sanitizer build (SANITIZE=address,undefined or thread).
test-sanitize: deps
	$(MAKE) build BUILD=build-san-$(subst $(comma),-,$(SANITIZE)) SANITIZE=$(SANITIZE)
	cd build-san-$(subst $(comma),-,$(SANITIZE)) && ctest --output-on-failure -j $(JOBS) -L 'unit|abi'

bench: deps build
	cmake --build $(BUILD) --target bench-all -j $(JOBS)
	./bench/run-all.sh $(BUILD)

fuzz: deps
	cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DPETAL_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build build-fuzz --target fuzz-all -j $(JOBS)
	./tests/fuzz/run-all.sh build-fuzz $(FUZZ_SECONDS)

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) build-san-* build-fuzz

comma := ,
