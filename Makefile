# Two commands for a newcomer: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export FLASK_APP := app:create_app

.PHONY: run test install db lint format bench clean worker client postman admin-token walkthrough

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(BIN)/.installed

db: install
	$(BIN)/flask db upgrade

# `make run PORT=5001` when 5000 is taken (on macOS, by the AirPlay Receiver).
PORT ?= 5000
run: db
	@$(BIN)/python -c "import socket, sys; s = socket.socket(); busy = s.connect_ex(('127.0.0.1', $(PORT))) == 0; sys.exit(busy and 'Port $(PORT) is in use: run make run PORT=5001 (any free port)')"
	$(BIN)/flask seed
	$(BIN)/flask run --host 127.0.0.1 --port $(PORT)

# An admin's access token from the running server (`make run`): the admin is
# created (or promoted) first. ADMIN=$$(make -s admin-token)
ADMIN_USERNAME ?= admin
ADMIN_EMAIL ?= admin@example.com
ADMIN_PASSWORD ?= change-me-please
admin-token: db
	@$(BIN)/flask create-admin --username '$(ADMIN_USERNAME)' --email '$(ADMIN_EMAIL)' --password '$(ADMIN_PASSWORD)' >/dev/null
	@curl -sS --fail-with-body -X POST http://127.0.0.1:$(PORT)/api/auth/login -H 'Content-Type: application/json' \
	  -d '{"username": "$(ADMIN_USERNAME)", "password": "$(ADMIN_PASSWORD)"}' | $(BIN)/python -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'

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

# The TypeScript client (clients/typescript): types from a running server's
# document, checked with tsc --strict, then the walk through the core flow.
SHOP_URL ?= http://localhost:$(PORT)
client:
	cd clients/typescript && npm ci --no-audit --no-fund
	cd clients/typescript && SHOP_URL=$(SHOP_URL) npm run generate && npm run check && npm run build
	cd clients/typescript && node dist/walk.js $(SHOP_URL)

# A Postman collection (baseUrl and bearerToken variables) from a running server.
postman:
	cd clients/typescript && npm ci --no-audit --no-fund
	cd clients/typescript && node scripts/postman.mjs $(SHOP_URL)/api/openapi.json ../../shop.postman_collection.json

# The README's curl walk-through (docs/walkthrough.sh) against `make run`.
walkthrough:
	PORT=$(PORT) bash docs/walkthrough.sh
