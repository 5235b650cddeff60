# stamp - top-level entry points.  CMake does the building; this file only
# names the jobs people run.
BUILD   ?= build
ASAN    ?= build-asan
FUZZ    ?= build-fuzz
# make fuzz: seconds per harness; make check-fuzz: STAMP_FUZZ_SECONDS (15).
FUZZ_SECONDS ?= 600
JOBS    ?= 2
PREFIX  ?= /usr/local

.PHONY: all deps test-deps build demo lint check check-fast check-asan fuzz fuzz-build check-fuzz soak bench install clean

all: build

deps:
	@scripts/install-deps.sh build

test-deps:
	@scripts/install-deps.sh test

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

demo: build
	@scripts/install-deps.sh demo
	@scripts/demo.sh $(BUILD)

# House rules the compiler does not check (banned calls).
lint:
	@scripts/lint.sh

# The whole suite, then the whole suite again under ASan+UBSan, then the
# fuzz harnesses' short regression runs.
check: test-deps lint
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	@cd $(BUILD) && ctest --output-on-failure -j 2
	@$(MAKE) --no-print-directory check-asan
	@$(MAKE) --no-print-directory check-fuzz

check-fast: test-deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	@cd $(BUILD) && ctest --output-on-failure -j 2

check-asan: test-deps
	@cmake -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=Debug -DSTAMP_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN) -j $(JOBS)
	@cd $(ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j 2

# The libFuzzer harnesses (tests/fuzz): clang, ASan+UBSan, the library only.
fuzz-build: test-deps
	@CC=clang cmake -S . -B $(FUZZ) -DCMAKE_BUILD_TYPE=Debug -DSTAMP_FUZZ=ON >/dev/null
	@cmake --build $(FUZZ) -j $(JOBS)

# Each harness for FUZZ_SECONDS (default 600) in turn.  New inputs that reach
# new code are added to tests/fuzz/corpus/NAME/ in the tree: commit those worth
# keeping (libFuzzer's -merge=1 into an empty dir minimises a corpus).  A crash
# stops the run with its input in $(FUZZ)/fuzz-artifacts/NAME/.
fuzz: fuzz-build
	@tests/fuzz/fuzz.sh $(FUZZ) $(FUZZ_SECONDS)

# Each harness for a short time over a copy of its corpus (ctest fuzz/*).
check-fuzz: fuzz-build
	@cd $(FUZZ) && ctest --output-on-failure -j 2

# kill -9 of stampd SOAK_KILLS times (default 1000) at random moments under a
# mixed load, invariants checked every SOAK_CHECK_EVERY (10); prints kills
# survived and violations.  Not part of check (1000 kills take about half an hour).
soak: test-deps build
	@STAMP_BIN=$(CURDIR)/$(BUILD) STAMP_SRC=$(CURDIR) scripts/soak.sh

bench: build
	@bench/run.sh $(BUILD)

install: build
	@cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) $(ASAN) $(FUZZ)
