# Two commands on a fresh Debian/Ubuntu machine, as root:
#   make bench   provision the host, run the default scenario on the default matrix, report
#   make test    provision the host, run the unit and integration tests
VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: bench test setup venv lint clean

bench: setup
	$(BIN)/archbench run

# The tests build for arm/v7 and riscv64 (Debian trixie) too: their base images and
# binfmt handlers are provisioned beside the default amd64 and arm64 ones.
TEST_PLATFORMS ?= linux/amd64,linux/arm64,linux/arm/v7,linux/riscv64

test: venv
	$(BIN)/archbench setup --platform $(TEST_PLATFORMS)
	@command -v chromium >/dev/null || { echo "installing chromium (report.html test)"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }
	$(BIN)/python -m pytest -p no:cacheprovider --benchmark-skip $(PYTEST_ARGS) tests/unit tests/integration

setup: venv
	$(BIN)/archbench setup

venv: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
		echo "installing python3-venv (needed for $(VENV))"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv python3-pip; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

lint: venv
	$(BIN)/ruff check bench tests
	$(BIN)/ruff format --check bench tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info
