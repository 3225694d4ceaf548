#!/usr/bin/env bash
# The README's walk-through: every call of the core flow, top to bottom, against
# a fresh `make run` (in another terminal). Needs curl and jq. From the
# repository root: `make walkthrough`, or `bash docs/walkthrough.sh`.
# tests/test_walkthrough.py runs this file and checks the README shows it as is.
set -euo pipefail
API=${API:-http://127.0.0.1:${PORT:-5000}/api}
JSON='Content-Type: application/json'
n=$(date +%s)  # fresh names, so the walk can run again
# Stop at the first unexpected error; the expected ones below end in `|| true`.
curl() { command curl --silent --show-error --fail-with-body "$@"; echo; }

# -- The catalog (make run loaded a demo catalog) --------------------------
curl $API/health
curl "$API/products?category=audio&sort=price&per_page=3"
curl "$API/products?q=phone&min_price=100&max_price=900&in_stock=true&sort=-price"

# -- An account: sign up (201), keep the tokens -----------------------------
SIGNUP=$(curl -X POST $API/auth/signup -H "$JSON" \
  -d "{\"username\": \"alice$n\", \"email\": \"alice$n@example.com\", \"password\": \"s3cret-pass\"}")
TOKEN=$(echo "$SIGNUP" | jq -r .access_token)
REFRESH=$(echo "$SIGNUP" | jq -r .refresh_token)
USER_ID=$(echo "$SIGNUP" | jq .user.id)
curl -X POST $API/auth/login -H "$JSON" -d "{\"username\": \"alice$n\", \"password\": \"s3cret-pass\"}"
curl $API/auth/profile -H "Authorization: Bearer $TOKEN"

# -- An admin: made with the CLI (never through the API), token by login ---
.venv/bin/flask create-admin --username admin --email admin@example.com --password 'change-me-please'
ADMIN=$(curl -X POST $API/auth/login -H "$JSON" \
  -d '{"username": "admin", "password": "change-me-please"}' | jq -r .access_token)

# -- The admin adds a product (201) and changes its stock ------------------
PRODUCT=$(curl -X POST $API/products -H "Authorization: Bearer $ADMIN" -H "$JSON" \
  -d "{\"name\": \"Walkthrough Phone $n\", \"price\": \"699.99\", \"stock\": 5, \"category\": \"Phones\", \"image_url\": \"https://example.com/phone.jpg\"}" \
  | jq .id)
curl -X PUT $API/products/$PRODUCT -H "Authorization: Bearer $ADMIN" -H "$JSON" -d '{"stock": 12}'
curl $API/products/$PRODUCT

# -- The cart ----------------------------------------------------------------
ITEM=$(curl -X POST $API/cart -H "Authorization: Bearer $TOKEN" -H "$JSON" \
  -d "{\"product_id\": $PRODUCT, \"quantity\": 2}" | jq '.items[0].id')
curl -X PUT $API/cart/$ITEM -H "Authorization: Bearer $TOKEN" -H "$JSON" -d '{"quantity": 3}'
# more than the stock: 409 {"code": "out_of_stock", "details": {"product_id": ..., "available": 12}}
curl -X POST $API/cart -H "Authorization: Bearer $TOKEN" -H "$JSON" \
  -d "{\"product_id\": $PRODUCT, \"quantity\": 20}" || true
curl $API/cart -H "Authorization: Bearer $TOKEN"

# -- Checkout (201); a retry with the same Idempotency-Key replays it --------
ORDER=$(curl -X POST $API/orders -H "Authorization: Bearer $TOKEN" -H "$JSON" \
  -H "Idempotency-Key: checkout-$n" -d '{"shipping_address": "221B Baker Street, London"}' | jq .id)
curl -i -X POST $API/orders -H "Authorization: Bearer $TOKEN" -H "$JSON" \
  -H "Idempotency-Key: checkout-$n" -d '{"shipping_address": "221B Baker Street, London"}'
curl "$API/orders?status=pending" -H "Authorization: Bearer $TOKEN"
curl $API/orders/$ORDER -H "Authorization: Bearer $TOKEN"
# the owner may change the address while the order is pending
curl -X PUT $API/orders/$ORDER -H "Authorization: Bearer $TOKEN" -H "$JSON" \
  -d '{"shipping_address": "10 Downing Street, London"}'

# -- The admin moves it along the workflow -----------------------------------
curl -X PUT $API/orders/$ORDER -H "Authorization: Bearer $ADMIN" -H "$JSON" -d '{"status": "processing"}'
curl -X PUT $API/orders/$ORDER -H "Authorization: Bearer $ADMIN" -H "$JSON" -d '{"status": "shipped"}'
# no step back: 409 {"code": "invalid_transition", "details": {"from": "shipped", "to": "pending"}}
curl -X PUT $API/orders/$ORDER -H "Authorization: Bearer $ADMIN" -H "$JSON" -d '{"status": "pending"}' || true
curl "$API/orders?all=true" -H "Authorization: Bearer $ADMIN"
curl $API/orders/user/$USER_ID -H "Authorization: Bearer $ADMIN"

# -- A second order, cancelled by its owner: the stock comes back ------------
curl -X POST $API/cart -H "Authorization: Bearer $TOKEN" -H "$JSON" -d "{\"product_id\": $PRODUCT}"
SECOND=$(curl -X POST $API/orders -H "Authorization: Bearer $TOKEN" -H "$JSON" \
  -d '{"shipping_address": "221B Baker Street, London"}' | jq .id)
curl -X POST $API/orders/$SECOND/cancel -H "Authorization: Bearer $TOKEN"

# -- Sessions: refresh; a password change ends every earlier session --------
curl -X POST $API/auth/refresh -H "Authorization: Bearer $REFRESH"
curl -X PUT $API/auth/profile -H "Authorization: Bearer $TOKEN" -H "$JSON" \
  -d '{"password": "n3w-secret-pass", "current_password": "s3cret-pass"}'
# the old token: 401 {"code": "token_revoked", ...}
curl $API/auth/profile -H "Authorization: Bearer $TOKEN" || true
TOKEN=$(curl -X POST $API/auth/login -H "$JSON" \
  -d "{\"username\": \"alice$n\", \"password\": \"n3w-secret-pass\"}" | jq -r .access_token)
curl -X POST $API/auth/logout -H "Authorization: Bearer $TOKEN"
# log out on every device at once (every token of the user so far)
TOKEN=$(curl -X POST $API/auth/login -H "$JSON" \
  -d "{\"username\": \"alice$n\", \"password\": \"n3w-secret-pass\"}" | jq -r .access_token)
curl -X POST $API/auth/logout-all -H "Authorization: Bearer $TOKEN"

# -- The admin removes the product (204): gone from the catalog, kept in orders
curl -X DELETE $API/products/$PRODUCT -H "Authorization: Bearer $ADMIN"
curl $API/products/$PRODUCT || true
curl $API/orders/$ORDER -H "Authorization: Bearer $ADMIN"
echo "walk-through complete"
