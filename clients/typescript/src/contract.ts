/**
 * Compile-time checks that the generated types say what the server accepts
 * (`tsc --strict` fails if an expected error goes away). Nothing runs here.
 */
import type {
  CartAddBody,
  LoginBody,
  Order,
  OrderPayments,
  OrderQuery,
  ProductCreateBody,
  ProductQuery,
  ProductUpdateBody,
} from "./client.js";

export const byEmail: LoginBody = { email: "alice@example.com", password: "correct-horse-9" };
export const byUsername: LoginBody = { username: "alice", password: "correct-horse-9" };
// @ts-expect-error -- login needs an email or a username
export const noIdentifier: LoginBody = { password: "correct-horse-9" };

export const priceAsString: ProductCreateBody = { name: "Phone", price: "699.99", stock: 3 };
export const priceAsNumber: ProductCreateBody = { name: "Phone", price: 699.99, stock: 3 };
// @ts-expect-error -- ids are the server's: not part of a request
export const withId: ProductCreateBody = { id: 1, name: "Phone", price: 1, stock: 3 };
// @ts-expect-error -- timestamps are the server's too
export const withCreatedAt: ProductUpdateBody = { created_at: "2026-11-24T17:05:00Z" };

// A response's status is one of the workflow's values, not any string.
export const statuses: Order["status"][] = ["pending", "processing", "shipped", "delivered"];
// @ts-expect-error -- not a status
export const badStatus: Order["status"] = "lost";

// `quantity` has a default (1): a cart add may leave it out.
export const defaultQuantity: CartAddBody = { product_id: 1 };

// An admin's view of an order's payments: money is a number, as in every
// answer; an attempt's intent id and failure message may be null.
export const refunded: OrderPayments["amount_refunded"] = 39.98;
export const attemptRefunded: OrderPayments["payments"][number]["amount_refunded"] = 10;
export const noIntent: OrderPayments["payments"][number]["intent_id"] = null;
// @ts-expect-error -- money in an answer is a number, not a string
export const refundedAsString: OrderPayments["amount_refunded"] = "39.98";

// Query booleans are booleans: the client sends `true` / `false`, the only
// spellings the server takes (anything else is a 422).
export const inStock: ProductQuery = { in_stock: true };
export const ownOrders: OrderQuery = { all: false };
// @ts-expect-error -- not a spelling of its own
export const inStockYes: ProductQuery = { in_stock: "yes" };
