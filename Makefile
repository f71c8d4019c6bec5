# edgewasm: common tasks. `make setup` once (inside a venv), then `make demo` and `make test`.
# Versions are pinned by constraints.txt (every tool and library CI tests with); `make constraints` renews them.
PYTHON ?= python3
EXTRAS ?= dev,models,onnx,openvino,tflite,plots,serve,quantize
#: What CI installs and `make constraints` pins: every extra (ray is some 500 MB, so `make setup` leaves it out).
CI_EXTRAS = $(EXTRAS),ray
IMAGE ?= localhost/edgewasm:latest
PIP = $(PYTHON) -m pip install -q -c constraints.txt

.PHONY: setup toolchain image-tools image constraints test wasmtime-oldest lint guest guest-check guest-test guest-test-wasm models demo bench bench-report clean

setup:                ## install edgewasm with every extra at the pinned versions, then fetch and convert the model
	$(PIP) -U pip setuptools wheel
	$(PIP) --no-build-isolation -e '.[$(EXTRAS)]'
	$(PYTHON) -m edgewasm models install

toolchain:            ## Debian's Rust for wasm32-wasi, its linker (rust-lld is lld-14) and the vendored crates (root)
	apt-get install -y --no-install-recommends rustc cargo libstd-rust-dev-wasm32 lld-14 \
	  librust-serde-dev librust-serde-derive-dev 'librust-serde+serde-derive-dev' librust-serde-bytes-dev \
	  librust-rmp-dev librust-rmp-serde-dev librust-image-dev librust-jpeg-decoder-dev librust-png-dev
	apt-get install -y --no-install-recommends clang-19 lld-19 llvm-19 libclang-rt-19-dev-wasm32 wasi-libc

image-tools:          ## podman, buildah, runc and debootstrap for `make image` (root; Debian/Ubuntu)
	apt-get install -y --no-install-recommends podman buildah catatonit runc debootstrap

image:                ## the serving image localhost/edgewasm:latest, offline (debootstrap'd base, cached); docs/deploy.md
	PYTHON=$(PYTHON) bash deploy/build-image.sh $(IMAGE)

constraints:          ## re-resolve every pin in a fresh venv (newest releases), rewrite constraints.txt, then test
	rm -rf .venv-constraints
	$(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/python -m pip install -q -U pip setuptools wheel
	.venv-constraints/bin/python -m pip install -q --no-build-isolation -e '.[$(CI_EXTRAS)]'
	{ echo "# Every package CI tests with, pinned. Regenerate with \`make constraints\` (a fresh venv, newest"; \
	  echo "# releases), run \`.ci/run\`, and commit this file with whatever the new versions needed."; \
	  .venv-constraints/bin/python -m pip freeze --all --exclude-editable | grep -v '^edgewasm'; } > constraints.txt
	rm -rf .venv-constraints

test:                 ## the whole test suite (unit, CLI in real processes, guests, benchmarks run once)
	$(PYTHON) -m pytest -q

# The oldest wasmtime-py pyproject.toml admits, and the test files that together use every part of it edgewasm
# touches (tests/test_wasmtime_fallback.py's CORE, plus the route checks and the runtime).
WASMTIME_OLDEST ?= 49.0.0
WASMTIME_CORE = test_abi.py test_guest.py test_isolation.py test_timeout.py test_nn_abi.py test_nn_deadline.py \
  test_wasmtime_fallback.py test_wasmtime_boundary.py test_runtime.py
OLDEST_VENV = .venv-wasmtime-oldest

wasmtime-oldest:      ## the suite's core on the oldest wasmtime-py in the supported range (fast route and fallback)
	rm -rf $(OLDEST_VENV)
	$(PYTHON) -m venv $(OLDEST_VENV)
	grep -v '^wasmtime==' constraints.txt > $(OLDEST_VENV)/constraints.txt
	$(OLDEST_VENV)/bin/python -m pip install -q -c $(OLDEST_VENV)/constraints.txt -U pip setuptools wheel
	$(OLDEST_VENV)/bin/python -m pip install -q -c $(OLDEST_VENV)/constraints.txt --no-build-isolation \
	  'wasmtime==$(WASMTIME_OLDEST)' -e '.[dev,models,onnx,serve]'
	$(OLDEST_VENV)/bin/python -c 'import importlib.metadata as m; v = m.version("wasmtime"); assert v == "$(WASMTIME_OLDEST)", v'
	$(OLDEST_VENV)/bin/python -m pytest -q -p no:cacheprovider $(addprefix tests/,$(WASMTIME_CORE))
	rm -rf $(OLDEST_VENV)

lint:
	ruff check src tests bench
	mypy

guest:                ## rebuild every Rust guest into wasm/
	bash guest/build.sh

guest-check:          ## rebuild into a temp dir and fail if wasm/ differs (reproducible builds)
	bash guest/build.sh --check

guest-test:           ## the Rust kernel, preprocessing, SDK and request tests, request fuzzing (scalar, native)
	cd guest && /usr/bin/cargo test -p effnet -p vision -p classifier-common -p edgewasm-guest --release --target x86_64-unknown-linux-gnu

guest-test-wasm:      ## effnet's kernel tests on the SIMD kernels (Rust simd128, C plain and relaxed SIMD) and the simd128 preprocessing against its reference, in wasmtime
	cd guest && for f in "" "--features relaxed-simd"; do \
	  CARGO_TARGET_DIR=target/test-wasm CARGO_TARGET_WASM32_WASI_RUNNER="$(PYTHON) $(CURDIR)/guest/wasi_test_runner.py" \
	  RUSTFLAGS="-C target-feature=+simd128" /usr/bin/cargo test -p effnet --release --target wasm32-wasi $$f \
	  --test kernels --test q8 --test image \
	  -- --test-threads=1 || exit 1; done
	cd guest && CARGO_TARGET_DIR=target/test-wasm CARGO_TARGET_WASM32_WASI_RUNNER="$(PYTHON) $(CURDIR)/guest/wasi_test_runner.py" \
	  RUSTFLAGS="-C target-feature=+simd128" /usr/bin/cargo test -p vision --release --target wasm32-wasi \
	  --test preprocess_reference --test jpeg_simd -- --test-threads=1

models:
	$(PYTHON) -m edgewasm models install

demo: setup           ## install, fetch and convert the model, classify the bundled cat photo in the sandbox
	edgewasm run wasm/classifier.wasm --image examples/cat.jpg

bench:                ## benchmarks (a few minutes), then docs/benchmarks.md; BENCH_FLAGS=--thorough for longer runs
	mkdir -p bench/results
	$(PYTHON) -m pytest bench -q -p no:cacheprovider --benchmark-json=bench/results/latest.json $(BENCH_FLAGS)
	$(PYTHON) bench/report.py bench/results/latest.json

bench-report:         ## rewrite docs/benchmarks.md and docs/img/*.png from bench/results/latest.json
	$(PYTHON) bench/report.py bench/results/latest.json

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache guest/target
