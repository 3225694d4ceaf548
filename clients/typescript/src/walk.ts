/**
 * The storefront's core flow against a live server, through the typed client:
 * signup -> products -> cart -> checkout -> orders (and the errors a
 * storefront branches on). Usage: node dist/walk.js [base URL].
 */
import { ShopApiError, ShopClient } from "./client.js";

const baseUrl = process.argv[2] ?? process.env.SHOP_URL ?? "http://localhost:5000";

function check(condition: boolean, what: string): void {
  if (!condition) throw new Error(`check failed: ${what}`);
  console.log(`ok - ${what}`);
}

async function expectError(promise: Promise<unknown>, code: string): Promise<ShopApiError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ShopApiError && error.code === code) return error;
    throw error;
  }
  throw new Error(`expected an error with code ${code}`);
}

async function main(): Promise<void> {
  const shop = new ShopClient(baseUrl);
  const name = `ts_${Date.now()}`;
  const tokens = await shop.signup({
    username: name,
    email: `${name}@example.com`,
    password: "correct-horse-9",
  });
  check(tokens.user.username === name, "signup returns the user and tokens");
  const again = await shop.login({ username: name, password: "correct-horse-9" });
  check(again.user.id === tokens.user.id, "login by username");

  const page = await shop.listProducts({ in_stock: true, sort: "price", per_page: 5 });
  check(page.items.length > 0 && page.page === 1, "a page of products in stock");
  const first = page.items[0];
  if (first === undefined) throw new Error("no product in stock");
  const facets = await shop.productFacets({ in_stock: true });
  check(facets.total >= page.items.length, "facets count the products in stock");
  const typed = first.name.split(" ")[0]?.slice(0, 3) ?? first.name;
  const suggested = await shop.suggest({ q: typed });
  check(Array.isArray(suggested.suggestions), "suggestions for what was typed");
  const product = await shop.getProduct(first.id);
  check(product.id === first.id && typeof product.price === "number", "product detail");

  let cart = await shop.addToCart({ product_id: product.id, quantity: 1 });
  check(cart.total_items === 1 && cart.items[0]?.product_id === product.id, "added to the cart");
  const line = cart.items[0];
  if (line === undefined) throw new Error("the cart has no line");
  if (product.stock >= 2) {
    cart = await shop.updateCartItem(line.id, { quantity: 2 });
    check(cart.total_items === 2, "cart quantity changed");
  }
  if (product.stock < 1000) {
    const short = await expectError(
      shop.addToCart({ product_id: product.id, quantity: product.stock }),
      "out_of_stock",
    );
    check(short.details?.available === product.stock, "out_of_stock names what is left");
  }

  const key = `walk-${name}`;
  const address = { shipping_address: "221B Baker Street, London NW1 6XE" };
  const order = await shop.placeOrder(address, key);
  check(order.status === "pending" && order.items.length === 1, "order placed, pending");
  const retried = await shop.placeOrder(address, key);
  check(retried.id === order.id, "a retry with the same Idempotency-Key replays the order");
  check((await shop.getCart()).total_items === 0, "the cart is empty after checkout");
  await expectError(shop.placeOrder(address), "empty_cart");

  const orders = await shop.listOrders({ status: "pending" });
  check(orders.items.some((o) => o.id === order.id), "the order is in the list");
  const detail = await shop.getOrder(order.id);
  check(detail.total_amount === order.total_amount, "order detail");
  const cancelled = await shop.cancelOrder(order.id);
  check(cancelled.status === "cancelled", "order cancelled");
  const wrong = await expectError(shop.cancelOrder(order.id), "invalid_transition");
  check(wrong.details?.from === "cancelled", "invalid_transition names the status");

  cart = await shop.addToCart({ product_id: product.id });
  const added = cart.items[0];
  if (added === undefined) throw new Error("the cart has no line");
  check((await shop.removeCartItem(added.id)).items.length === 0, "a cart line removed");
  await shop.addToCart({ product_id: product.id });
  check((await shop.clearCart()).total_items === 0, "the cart cleared");
  await shop.addToCart({ product_id: product.id });
  const toPay = await shop.placeOrder(address);
  const paid = await shop.payOrder(toPay.id, { payment_method: "pm_card_visa" });
  check(paid.payment_status === "paid" && paid.status === "processing", "order paid");

  const refreshed = await shop.refresh();
  check(refreshed.access_token === shop.token, "a new access token from the refresh token");
  check((await shop.profile()).id === tokens.user.id, "the new token works");
  await shop.logoutAll();
  await expectError(shop.getCart(), "token_revoked");
  console.log("walk complete");
}

main().catch((error: unknown) => {
  console.error(error instanceof ShopApiError ? `${error.status} ${error.code}: ${error.message}` : error);
  process.exitCode = 1;
});
