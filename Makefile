# Two commands on a fresh machine: `make run` and `make test`.
# Everything lands in .venv; the constraints file pins what CI and newcomers get.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test install clean lock

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Flags for the demo: make run ARGS="--port 9000 --data-dir /tmp/wetoop"
run: $(STAMP)
	$(BIN)/wetoop-bot demo $(ARGS)

# Two workers (pytest-xdist), each with its own embedded servers: the suite in
# about half the time on two cores. TEST_WORKERS=0 runs it in one process, as
# it runs with REDIS_URL set: each test clears the wb: keys, which one Redis
# shared by two workers would clear under the other's feet.
TEST_WORKERS ?= $(if $(REDIS_URL),0,2)
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

# Refresh constraints.txt from the current environment after changing dependencies.
lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e ' > constraints.txt

clean:
	rm -rf $(VENV) var .pytest_cache
