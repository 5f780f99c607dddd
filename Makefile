# Developers and CI run the same targets. `make test` is everything CI checks; on a fresh
# machine it first installs what it needs (Python packages from PyPI, and as root the Debian
# packages the kernel tests use), so it works from a clean clone.
#
#   make test     everything: Rust fmt/clippy/tests, wheels+sdist build and install, ruff, mypy,
#                 stubtest, the docs site, pytest
#   make wheels   the manylinux2014 abi3 wheel (zig as the linker) and the sdist, in target/wheels
#   make docs     the documentation site (mkdocs build --strict) into target/site
#   make dev      editable install (python/ is live; rerun after changing Rust)
#   make lint     the static checks only (no build of the wheel)
#   make fmt      rewrite Rust and Python sources into the checked formatting (ruff --fix too)
#   make bench    cargo bench, then benches/replay_bench.py if present
#   make fuzz     cargo +nightly fuzz: every target of fuzz/ for FUZZ_SECONDS each (libFuzzer)
#   make fuzz-test  the fuzz targets over their seed corpora and regressions, as plain tests
#   make deps     Python packages: maturin and the `test`, `docs` and `dist` extras of pyproject.toml

PYTHON ?= python3
CARGO ?= cargo
PIP := $(PYTHON) -m pip
# The wheels and sdist `make test` builds once, installs, and hands to tests/test_wheel.py.
WHEEL_DIR ?= target/wheels
# Rust targets to build wheels for: gnu targets give manylinux2014 (glibc 2.17) wheels, musl
# targets musllinux_1_2 ones, all linked by zig. Each must be installed (`rustup target add`);
# this machine has only its own. The README says how a release machine adds the others.
WHEEL_TARGETS ?= $(shell uname -m)-unknown-linux-gnu
# The extras of pyproject.toml that `make deps` installs.
DEV_EXTRAS := test docs dist
PYTEST_ARGS ?=
# CI checks that Cargo.lock is up to date instead of silently updating it.
CARGO_LOCKED := $(if $(filter true 1,$(CI)),--locked,)
# What the kernel differential tests need, and the headless browser the report's test renders
# its page in (tests/test_report_browser.py), as Debian packages and as the commands they give.
APT_PACKAGES := nftables conntrack tcpdump iproute2 valgrind chromium
KERNEL_TOOLS := nft conntrack tcpdump ip valgrind chromium
RUFF_PATHS := python tests tools $(wildcard benches/*.py)
STUBTEST_ALLOWLIST := $(wildcard .stubtest-allowlist)

export PATH := $(PATH):/usr/local/sbin:/usr/sbin:/sbin
export PYO3_PYTHON := $(shell $(PYTHON) -c 'import sys; print(sys.executable)')
# maturin --zig runs `python3 -m ziglang` from PATH unless told which Python has ziglang.
export CARGO_ZIGBUILD_PYTHON_PATH := $(PYO3_PYTHON)
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_ROOT_USER_ACTION := ignore
export PIP_NO_INPUT := 1

# Each step's output is read in order; cargo already uses both cores.
.NOTPARALLEL:
.DEFAULT_GOAL := test
.PHONY: test deps python-deps system-deps ensure-system-deps dev lint fmt rust-fmt clippy \
	cargo-test fuzz-test fuzz wheels install py-lint typecheck stubtest docs pytest bench clean

test: deps rust-fmt py-lint clippy cargo-test fuzz-test install typecheck stubtest docs pytest

# --- Dependencies ---------------------------------------------------------------------------

deps: python-deps ensure-system-deps

# One list, in pyproject.toml: the build backend, the runtime dependencies and the extras of
# DEV_EXTRAS (tests, docs, wheel tools), installed without building nfct itself.
python-deps:
	@mkdir -p target
	@$(PYTHON) tools/dev_requirements.py $(DEV_EXTRAS) > target/requirements-dev.txt
	$(PIP) install -q -r target/requirements-dev.txt

# Unconditional (.ci/run uses it); needs root and apt.
system-deps:
	DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Retries=3 update -qq
	DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Retries=3 install -y -qq \
		--no-install-recommends \
		$(APT_PACKAGES) >/dev/null

# Installs the Debian packages only where a command is missing; without root, warns instead
# (the kernel tests then skip, outside CI).
ensure-system-deps:
	@missing=""; for tool in $(KERNEL_TOOLS); do \
		command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "missing:$$missing; installing $(APT_PACKAGES)"; \
		$(MAKE) --no-print-directory system-deps; \
	else \
		echo "warning: missing:$$missing; kernel and browser tests will skip" \
			"(sudo make system-deps)" >&2; \
	fi

# --- Development ----------------------------------------------------------------------------

# Editable install into the current environment: python/nfct is imported from the source tree,
# the extension is built (release profile) into python/nfct/. Rerun after changing Rust code.
# `make test` replaces it with the wheel it builds; run `make dev` again afterwards.
dev: python-deps
	$(PIP) install --no-build-isolation -e .

lint: python-deps rust-fmt py-lint clippy typecheck

fmt:
	$(CARGO) fmt --all
	-$(PYTHON) -m ruff check --fix $(RUFF_PATHS)
	$(PYTHON) -m ruff format $(RUFF_PATHS)

# --- Rust -----------------------------------------------------------------------------------

rust-fmt:
	$(CARGO) fmt --all --check

# Twice: the core alone, and with the `python` feature so that rust/python/ is linted too
# (clippy only checks, so no libpython is linked).
clippy:
	$(CARGO) clippy $(CARGO_LOCKED) --all-targets -- -D warnings
	$(CARGO) clippy $(CARGO_LOCKED) --all-targets --features python -- -D warnings

# Without the `python` feature: no libpython needed.
cargo-test:
	$(CARGO) test $(CARGO_LOCKED)

# The fuzz targets (fuzz/src/lib.rs) over their seed corpora (from examples/), a few hundred
# deterministic mutations of each, and fuzz/regressions/: the CI step (stable, debug build so
# that arithmetic overflow panics; it shares target/ with cargo-test). `make fuzz` explores.
fuzz-test:
	$(CARGO) test $(CARGO_LOCKED) --manifest-path fuzz/Cargo.toml --target-dir target

FUZZ_TARGETS := wire capture pipeline defrag host nat
FUZZ_SECONDS ?= 60
fuzz:
	@mkdir -p fuzz/corpus
	NFCT_FUZZ_CORPUS=$(abspath fuzz/corpus) $(CARGO) test --manifest-path fuzz/Cargo.toml \
		--target-dir target -q
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "cargo +nightly fuzz run $$t ($(FUZZ_SECONDS) s)"; \
		nice -n 10 $(CARGO) +nightly fuzz run --features fuzz $$t fuzz/corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -print_final_stats=1; done

# --- Python ---------------------------------------------------------------------------------

# One abi3 wheel per target (for every CPython >= 3.11), linked by zig (`ziglang` from PyPI)
# against the oldest glibc manylinux2014 allows, whatever the glibc of this machine; then the
# sdist; then `auditwheel show` on each wheel (it fails on a wheel whose tag its libraries
# break).
wheels:
	@installed="$$(rustup target list --installed 2>/dev/null || rustc -vV | sed -n 's/^host: //p')"; \
	for t in $(WHEEL_TARGETS); do \
		echo "$$installed" | grep -qx "$$t" || { echo "make wheels: Rust target $$t is not" \
			"installed (rustup target add $$t); installed: $$installed" >&2; exit 1; }; done
	@mkdir -p $(WHEEL_DIR)
	rm -f $(WHEEL_DIR)/nfct-*.whl $(WHEEL_DIR)/nfct-*.tar.gz
	@set -e; for t in $(WHEEL_TARGETS); do \
		case $$t in *-musl*) compat=musllinux_1_2;; *) compat=manylinux2014;; esac; \
		echo "$(PYTHON) -m maturin build --release $(CARGO_LOCKED) --zig --target $$t" \
			"--compatibility $$compat -i $(PYTHON) -o $(WHEEL_DIR)"; \
		$(PYTHON) -m maturin build --release $(CARGO_LOCKED) --zig --target $$t \
			--compatibility $$compat -i $(PYTHON) -o $(WHEEL_DIR); done
	$(PYTHON) -m maturin sdist -o $(WHEEL_DIR)
	@set -e; for w in $(WHEEL_DIR)/nfct-*.whl; do \
		echo "auditwheel show $$w"; $(PYTHON) -m auditwheel show "$$w"; done

# Replaces whatever nfct is installed (an editable one too) with this machine's wheel.
install: wheels
	$(PIP) install -q --force-reinstall --no-deps $(WHEEL_DIR)/nfct-*-manylinux*_$$(uname -m).whl
	$(PIP) install -q $(WHEEL_DIR)/nfct-*-manylinux*_$$(uname -m).whl

py-lint:
	$(PYTHON) -m ruff check $(RUFF_PATHS)
	$(PYTHON) -m ruff format --check $(RUFF_PATHS)

typecheck:
	$(PYTHON) -m mypy python/nfct python/_nfct_launcher

# The stubs in python/nfct/_nfct.pyi against the installed extension module.
stubtest:
	$(PYTHON) -m mypy.stubtest --mypy-config-file pyproject.toml \
		$(if $(STUBTEST_ALLOWLIST),--allowlist $(STUBTEST_ALLOWLIST)) nfct._nfct

# The documentation site, as CI builds it: any warning (a broken link, a reference that does
# not resolve) fails. Fonts are not fetched (mkdocs.yml: theme.font false).
docs:
	$(PYTHON) -m mkdocs build --strict --site-dir target/site

pytest:
	NFCT_WHEEL_DIR=$(abspath $(WHEEL_DIR)) $(PYTHON) -m pytest $(PYTEST_ARGS)

# --- Benchmarks -----------------------------------------------------------------------------

bench: python-deps install
	$(CARGO) bench $(CARGO_LOCKED)
	@if [ -f benches/replay_bench.py ]; then \
		echo "$(PYTHON) benches/replay_bench.py"; $(PYTHON) benches/replay_bench.py; \
	else \
		echo "benches/replay_bench.py not present: skipped"; \
	fi

clean:
	$(CARGO) clean
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis python/nfct/*.so
