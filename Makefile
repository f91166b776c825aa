# ferry: the two quick-start commands and a few helpers.
#   make run   installs what is missing, builds, runs `ferry serve` with embedded defaults
#   make test  installs what is missing, builds with sanitizers, runs every test via ctest
#   make install [PREFIX=/usr/local] [DESTDIR=]  installs the release build (docs/man, contrib)
.PHONY: run test build build-release build-gcc build-tsan test-tsan deps fuzz bench format clean \
	install

JOBS ?= 2
# Warnings stop only builds that ask for it (CI: make ... WERROR=ON); a
# user's build with another compiler version is never stopped by a warning.
WERROR ?= OFF
RUN_DATA ?= $(CURDIR)/build/run-data
RUN_LISTEN ?= 127.0.0.1:7070
# make install: where to (PREFIX), staged beneath DESTDIR, from which build.
PREFIX ?= /usr/local
INSTALL_BUILD ?= build/release

deps:
	@bash scripts/install-deps.sh

build-release: deps
	@cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release \
	    -DCMAKE_C_FLAGS_RELEASE="-O2 -DNDEBUG" -DBUILD_TESTING=OFF -DFERRY_WERROR=$(WERROR) >/dev/null
	@cmake --build build/release -j$(JOBS)

install: build-release
	@DESTDIR="$(DESTDIR)" cmake --install "$(INSTALL_BUILD)" --prefix "$(PREFIX)"

run: build-release
	@bash scripts/run.sh build/release/ferry "$(RUN_DATA)" "$(RUN_LISTEN)"

build: deps
	@cmake -S . -B build/test -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
	    -DFERRY_SANITIZE=ON -DFERRY_FUZZ=ON -DFERRY_WERROR=$(WERROR) >/dev/null
	@cmake --build build/test -j$(JOBS)

test: build
	@cd build/test && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    ctest --output-on-failure --no-tests=error -j$(JOBS)

# Everything, tests included, with Debian's gcc: the compiler users build with.
build-gcc: deps
	@cmake -S . -B build/gcc -DCMAKE_C_COMPILER=gcc -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DFERRY_WERROR=$(WERROR) >/dev/null
	@cmake --build build/gcc -j$(JOBS)

# ThreadSanitizer: the unit and protocol tests, whose code runs threads
# (writer, reader, scanner, the server's pool jobs).
build-tsan: deps
	@cmake -S . -B build/tsan -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
	    -DFERRY_TSAN=ON -DFERRY_WERROR=$(WERROR) >/dev/null
	@cmake --build build/tsan -j$(JOBS)

test-tsan: build-tsan
	@cd build/tsan && TSAN_OPTIONS="second_deadlock_stack=1 suppressions=$(CURDIR)/tests/tsan.supp" \
	    ctest --output-on-failure --no-tests=error -j$(JOBS) -L 'unit|proto'

fuzz: build
	@bash scripts/fuzz.sh build/test $${FUZZ_SECONDS:-60}

bench: deps
	@bash bench/compare.sh

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build
