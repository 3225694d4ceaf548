# Two commands for a newcomer: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export FLASK_APP := app:create_app

.PHONY: run test install db lint format bench clean worker

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(BIN)/.installed

db: install
	$(BIN)/flask db upgrade

run: db
	$(BIN)/flask seed
	$(BIN)/flask run --host 127.0.0.1 --port 5000

# Celery worker (with its beat) on REDIS_URL: delivers email and runs periodic jobs.
worker: db
	$(BIN)/flask worker

test: install
	FLASK_CONFIG=testing $(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

bench: install
	$(BIN)/python bench/run.py
