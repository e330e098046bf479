# Thin wrapper over CMake: each verb makes sure the Debian packages are there (scripts/deps.sh),
# configures build/<variant>/ and builds. See README.md.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
DATA ?= ./shale-data
CMAKE_FLAGS ?=

.PHONY: all build deps run demo test asan tsan fuzz clang bench fmt fmt-check tidy install clean \
	crash powerloss faults corrupt

all: build

deps:
	@scripts/deps.sh

build/release/Makefile: deps
	@cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null

build: deps
	@cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	@cmake --build build/release -j $(JOBS)

run: build
	@build/release/shale serve --data $(DATA)

demo: build
	@scripts/demo.sh build/release/shale $(DATA)

test: build
	@cd build/release && ctest --output-on-failure -j $(JOBS)

asan: deps
	@cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DSHALE_SANITIZE=ON -DSHALE_BENCH_PEERS=OFF >/dev/null
	@cmake --build build/asan -j $(JOBS)
	@cd build/asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j $(JOBS)

tsan: deps
	@cmake -S . -B build/tsan -DCMAKE_BUILD_TYPE=Debug -DSHALE_TSAN=ON -DSHALE_BENCH_PEERS=OFF >/dev/null
	@cmake --build build/tsan --target test_stress test_server_stress shale -j $(JOBS)
	@cd build/tsan && ctest --output-on-failure -L tsan

# The data-safety campaigns (docs/DURABILITY.md), one command each: `make crash`, `make powerloss`,
# `make faults`, `make corrupt`. `make test` runs each at SCALE=1; SCALE=N multiplies the cycles,
# states and faults (the long mode), with no per-test time limit. Each prints what it checked.
SCALE ?= 1
crash powerloss faults corrupt: build
	@rm -f build/release/campaign-$@.txt
	@mkdir -p build/release/testtmp
	@SHALE_BIN=$$PWD/build/release/shale SHALE_TEST_TMP=$$PWD/build/release/testtmp \
		SHALE_CAMPAIGN_SCALE=$(SCALE) SHALE_CAMPAIGN_REPORT=$$PWD/build/release/campaign-$@.txt \
		build/release/test_$@ --jobs $(JOBS)
	@echo "== $@ campaign (SCALE=$(SCALE)):" && cat build/release/campaign-$@.txt

# libFuzzer on every target of tests/fuzz, FUZZ_TIME seconds each (FUZZ_SAVE=1 merges what it
# found into the saved corpora that every `make test` replays). See tests/fuzz/README.md.
FUZZ_TIME ?= 60
fuzz: deps
	@CC=clang cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=Debug -DSHALE_SANITIZE=ON -DSHALE_FUZZ=ON \
		-DSHALE_TESTS=OFF -DSHALE_BENCH_PEERS=OFF >/dev/null
	@cmake --build build/fuzz -j $(JOBS)
	@scripts/fuzz.sh build/fuzz $(FUZZ_TIME) $(FUZZ_SAVE)

clang: deps
	@CC=clang cmake -S . -B build/clang -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build build/clang -j $(JOBS)

bench:
	@scripts/deps.sh bench
	@cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	@cmake --build build/release -j $(JOBS)

fmt: deps
	@clang-format -i $$(git ls-files '*.c' '*.h')

fmt-check: deps
	@clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

tidy: build
	@clang-tidy -p build/release $$(git ls-files 'src/*.c' ':!src/**/*_test.c')

install: build
	@cmake --install build/release

clean:
	@rm -rf build
