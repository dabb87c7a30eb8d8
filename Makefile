# MetaCore — build, test, run and benchmark. `make test` and `make run` work on a fresh Debian/Ubuntu
# machine on their own: they install the system libraries first (`make deps`).

SWIFT ?= swift
DEB_PACKAGES := libopenblas-dev liblapacke-dev libzip-dev libpng-dev libjpeg-dev zlib1g-dev libopenmpi-dev openmpi-bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
BENCH_DIR := bench-results

.PHONY: deps build test sanitize fuzz run bench bench-mpi docs protos clean

# Installs the Debian packages the C targets link against (BLAS/LAPACK for the kernels; zip, PNG, JPEG, zlib to read
# datasets; Open MPI for multi-process runs, optional to the build); does nothing when they are already present.
deps:
	@if dpkg-query -W -f='$${Status}\n' $(DEB_PACKAGES) 2>/dev/null | grep -qv 'install ok installed' \
	    || [ "$$(dpkg-query -W -f='$${Status}\n' $(DEB_PACKAGES) 2>/dev/null | wc -l)" != "$(words $(DEB_PACKAGES))" ]; then \
	    echo "installing $(DEB_PACKAGES)"; \
	    $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(DEB_PACKAGES); \
	else echo "deps: $(DEB_PACKAGES) already installed"; fi

build: deps
	$(SWIFT) build -c release

# Regenerates the Swift types of Protos/*.proto with swift-protobuf's protoc-gen-swift (built from the package
# this one depends on) and protoc (Debian: protobuf-compiler, installed here if missing). The generated files are
# committed: the build needs neither.
PROTO_OUT := Sources/MetaCore/Training/TensorBoard
protos:
	@command -v protoc >/dev/null || ($(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends protobuf-compiler)
	$(SWIFT) build -c release --product protoc-gen-swift
	protoc --plugin=protoc-gen-swift=$$($(SWIFT) build -c release --show-bin-path)/protoc-gen-swift \
	    --swift_opt=Visibility=Public --swift_out=$(PROTO_OUT) -I Protos Protos/tensorboard.proto

# Builds metactl first: the command-line tests run it.
test: deps
	$(SWIFT) build
	$(SWIFT) test

# The test suite under a sanitizer, in a build folder of its own: SANITIZER=address (the default; CI runs it),
# thread or undefined. The kernels' AVX clones are left out (MC_NO_CLONES): their ifunc resolvers run before
# ThreadSanitizer has started. Leak checking is off: it reports the tests' lazily built globals (the Omniglot
# fixture) at exit.
# Swift has no undefined-behaviour sanitizer: SANITIZER=undefined checks the C targets (clang's UBSan, every
# finding fatal).
SANITIZER ?= address
CLANG_RUNTIME = $(firstword $(wildcard $(dir $(realpath $(shell command -v $(SWIFT))))../lib/clang/*/lib/linux))
ifeq ($(SANITIZER),undefined)
SANITIZE_FLAGS = -Xcc -fsanitize=undefined -Xcc -fno-sanitize-recover=undefined -Xcc -DMC_NO_CLONES \
    -Xlinker $(CLANG_RUNTIME)/libclang_rt.ubsan_standalone-x86_64.a -Xlinker -lstdc++
else
SANITIZE_FLAGS = --sanitize=$(SANITIZER) -Xcc -DMC_NO_CLONES
endif
sanitize: deps
	$(SWIFT) build --build-tests --scratch-path .build-$(SANITIZER) $(SANITIZE_FLAGS)
	ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    $(SWIFT) test --scratch-path .build-$(SANITIZER) $(SANITIZE_FLAGS)

# libFuzzer on every parser of outside bytes (UntrustedInput: safetensors, checkpoint restore, Omniglot and image
# caches, PNG and JPEG images, zip), each for FUZZ_RUNS inputs or FUZZ_SECONDS, whichever ends first, two at a time; starts from
# Fuzz/corpus and keeps what it learns in .build-fuzz/corpus. A crash stops with the input in
# .build-fuzz/findings/TARGET/: add it to Fuzz/corpus/TARGET, where the test suite replays it.
FUZZ_RUNS ?= 1000000
FUZZ_SECONDS ?= 900
FUZZ_TARGETS := safetensors checkpoint cache imagecache image zip
FUZZ_LIB = $(CLANG_RUNTIME)/libclang_rt.fuzzer_no_main-x86_64.a
FUZZ_FLAGS := -Xswiftc -sanitize=address -Xswiftc -sanitize-coverage=edge,trace-cmp,inline-8bit-counters,pc-table -Xswiftc -DFUZZING \
    -Xcc -fsanitize=fuzzer-no-link,address -Xcc -DMC_NO_CLONES -Xlinker $(FUZZ_LIB) -Xlinker -lstdc++
fuzz: deps
	$(SWIFT) build --scratch-path .build-fuzz --product metacore-fuzz $(FUZZ_FLAGS)
	@printf '%s\n' $(FUZZ_TARGETS) | xargs -P 2 -I{} sh -c '\
	    mkdir -p .build-fuzz/corpus/{} .build-fuzz/findings/{} && cp -n Fuzz/corpus/{}/* .build-fuzz/corpus/{}/ && \
	    METACORE_FUZZ_TARGET={} ASAN_OPTIONS=detect_leaks=0 .build-fuzz/debug/metacore-fuzz -runs=$(FUZZ_RUNS) \
	        -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
	        -artifact_prefix=.build-fuzz/findings/{}/ .build-fuzz/corpus/{} > .build-fuzz/{}.log 2>&1; \
	    status=$$?; printf "%-12s exit %s, %s executions, %s crashes\n" {} $$status \
	        "$$(grep -o "stat::number_of_executed_units: [0-9]*" .build-fuzz/{}.log | grep -o "[0-9]*$$")" \
	        "$$(ls .build-fuzz/findings/{} | wc -l)"; exit $$status'

# Meta-trains MAML on sinusoids for about a minute (30,000 iterations), then evaluates it on 600 held-out tasks.
run: build
	@mkdir -p runs
	.build/release/metactl train --algorithm maml --task sine --iterations 30000 \
	    --checkpoint runs/maml-sine.safetensors --log runs/maml-sine.jsonl
	.build/release/metactl eval --checkpoint runs/maml-sine.safetensors --tasks 600 --steps 10

# Kernel rates and the end-to-end workloads (about 3 minutes on 2 cores); the JSON report goes next to the
# machine's description (CPU model and flags, cores, memory, BLAS build).
bench: build
	@mkdir -p $(BENCH_DIR)
	@{ lscpu; echo; free -h; echo; dpkg-query -W 'libopenblas*' 2>/dev/null; } > $(BENCH_DIR)/machine.txt
	.build/release/metactl bench --output $(BENCH_DIR)/bench.json
	@echo "wrote $(BENCH_DIR)/bench.json and $(BENCH_DIR)/machine.txt"

# Data-parallel scaling of omni5 (about 4 minutes): one process on 2 threads, and 1 and 2 MPI ranks of 1 thread,
# alternating for 3 rounds; the exchange per meta-step and the parallel efficiency (benchmarks/mpi-scaling.sh).
bench-mpi: build
	benchmarks/mpi-scaling.sh omni5 3

# DocC documentation of the MetaCore library (swift-docc-plugin): the API and the articles in
# Sources/MetaCore/MetaCore.docc. Open docs/index.html through a web server, or read the archive in Xcode.
docs:
	$(SWIFT) package --allow-writing-to-directory docs generate-documentation --target MetaCore \
	    --output-path docs --transform-for-static-hosting --hosting-base-path /
	@echo "wrote docs/ (static site; docs/index.html)"

clean:
	rm -rf .build .build-address .build-thread .build-undefined .build-fuzz $(BENCH_DIR) runs docs
