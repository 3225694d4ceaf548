# Two commands for a newcomer: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export FLASK_APP := app:create_app

.PHONY: run test install db lint format bench clean client postman

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
SHOP_URL ?= http://localhost:$(or $(PORT),5000)
client:
	cd clients/typescript && npm ci --no-audit --no-fund
	cd clients/typescript && SHOP_URL=$(SHOP_URL) npm run generate && npm run check && npm run build
	cd clients/typescript && node dist/walk.js $(SHOP_URL)

# A Postman collection (baseUrl and bearerToken variables) from a running server.
postman:
	cd clients/typescript && npm ci --no-audit --no-fund
	cd clients/typescript && node scripts/postman.mjs $(SHOP_URL)/api/openapi.json ../../shop.postman_collection.json
