# MetaCore — build, test, run and benchmark. `make test` and `make run` work on a fresh Debian/Ubuntu
# machine on their own: they install the system libraries first (`make deps`).

SWIFT ?= swift
DEB_PACKAGES := libopenblas-dev liblapacke-dev libzip-dev libpng-dev zlib1g-dev
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
BENCH_DIR := bench-results

.PHONY: deps build test run bench docs clean

# Installs the Debian packages the C targets link against (BLAS/LAPACK for the kernels; zip, PNG, zlib to read datasets); does nothing when they are already present.
deps:
	@if dpkg-query -W -f='$${Status}\n' $(DEB_PACKAGES) 2>/dev/null | grep -qv 'install ok installed' \
	    || [ "$$(dpkg-query -W -f='$${Status}\n' $(DEB_PACKAGES) 2>/dev/null | wc -l)" != "$(words $(DEB_PACKAGES))" ]; then \
	    echo "installing $(DEB_PACKAGES)"; \
	    $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(DEB_PACKAGES); \
	else echo "deps: $(DEB_PACKAGES) already installed"; fi

build: deps
	$(SWIFT) build -c release

# Builds metactl first: the command-line tests run it.
test: deps
	$(SWIFT) build
	$(SWIFT) test

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

# DocC documentation of the MetaCore library (swift-docc-plugin): the API and the articles in
# Sources/MetaCore/MetaCore.docc. Open docs/index.html through a web server, or read the archive in Xcode.
docs:
	$(SWIFT) package --allow-writing-to-directory docs generate-documentation --target MetaCore \
	    --output-path docs --transform-for-static-hosting --hosting-base-path /
	@echo "wrote docs/ (static site; docs/index.html)"

clean:
	rm -rf .build $(BENCH_DIR) runs docs
