# ferry: the two quick-start commands and a few helpers.
#   make run   installs what is missing, builds, runs `ferry serve` with embedded defaults
#   make test  installs what is missing, builds with sanitizers, runs every test via ctest
#   make install [PREFIX=/usr/local] [DESTDIR=]  installs the release build (docs/man, contrib)
.PHONY: run test build build-release deps fuzz bench format clean install

JOBS ?= 2
RUN_DATA ?= $(CURDIR)/build/run-data
RUN_LISTEN ?= 127.0.0.1:7070
# make install: where to (PREFIX), staged beneath DESTDIR, from which build.
PREFIX ?= /usr/local
INSTALL_BUILD ?= build/release

deps:
	@bash scripts/install-deps.sh

build-release: deps
	@cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release \
	    -DCMAKE_C_FLAGS_RELEASE="-O2 -DNDEBUG" -DBUILD_TESTING=OFF >/dev/null
	@cmake --build build/release -j$(JOBS)

install: build-release
	@DESTDIR="$(DESTDIR)" cmake --install "$(INSTALL_BUILD)" --prefix "$(PREFIX)"

run: build-release
	@bash scripts/run.sh build/release/ferry "$(RUN_DATA)" "$(RUN_LISTEN)"

build: deps
	@cmake -S . -B build/test -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
	    -DFERRY_SANITIZE=ON -DFERRY_FUZZ=ON >/dev/null
	@cmake --build build/test -j$(JOBS)

test: build
	@cd build/test && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    ctest --output-on-failure --no-tests=error -j$(JOBS)

fuzz: build
	@bash scripts/fuzz.sh build/test $${FUZZ_SECONDS:-60}

bench: deps
	@bash bench/compare.sh

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build
