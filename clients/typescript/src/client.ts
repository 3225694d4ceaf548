/**
 * A typed client of the shop API. Every type comes from `schema.d.ts`, which
 * `npm run generate` makes from the server's /api/openapi.json with
 * openapi-typescript: when the API changes, `npm run check` says what broke.
 */
import type { components, paths } from "./schema.js";

export type Schemas = components["schemas"];
export type User = Schemas["UserResponse"];
export type Tokens = Schemas["TokensResponse"];
export type Product = Schemas["ProductResponse"];
export type ProductPage = Schemas["ProductPageResponse"];
export type Cart = Schemas["CartResponse"];
export type Order = Schemas["OrderResponse"];
export type OrderPage = Schemas["OrderPageResponse"];
export type OrderPayments = Schemas["OrderPaymentsResponse"];
export type Review = Schemas["ReviewResponse"];
export type ErrorBody = Schemas["Error"];

type JsonBody<Op> = Op extends { requestBody?: infer R }
  ? NonNullable<R> extends { content: { "application/json": infer B } }
    ? B
    : never
  : never;
type Query<Op> = Op extends { parameters: { query?: infer Q } } ? NonNullable<Q> : never;

export type SignupBody = JsonBody<paths["/api/auth/signup"]["post"]>;
export type LoginBody = JsonBody<paths["/api/auth/login"]["post"]>;
export type ProductCreateBody = JsonBody<paths["/api/products"]["post"]>;
export type ProductUpdateBody = JsonBody<paths["/api/products/{product_id}"]["put"]>;
export type CartAddBody = JsonBody<paths["/api/cart"]["post"]>;
export type CartUpdateBody = JsonBody<paths["/api/cart/{item_id}"]["put"]>;
export type OrderCreateBody = JsonBody<paths["/api/orders"]["post"]>;
export type OrderUpdateBody = JsonBody<paths["/api/orders/{order_id}"]["put"]>;
export type ProductQuery = Query<paths["/api/products"]["get"]>;
export type OrderQuery = Query<paths["/api/orders"]["get"]>;
export type ProfileUpdateBody = JsonBody<paths["/api/auth/profile"]["put"]>;
export type LogoutBody = JsonBody<paths["/api/auth/logout"]["post"]>;
export type PasswordResetBody = JsonBody<paths["/api/auth/password-reset"]["post"]>;
export type PasswordResetConfirmBody = JsonBody<paths["/api/auth/password-reset/confirm"]["post"]>;
export type VerifyEmailBody = JsonBody<paths["/api/auth/verify-email"]["post"]>;
export type PayBody = JsonBody<paths["/api/orders/{order_id}/pay"]["post"]>;
export type ReviewBody = JsonBody<paths["/api/products/{product_id}/reviews"]["post"]>;
export type ReviewUpdateBody = JsonBody<paths["/api/reviews/{review_id}"]["put"]>;
export type StockAdjustmentBody = JsonBody<paths["/api/products/{product_id}/stock"]["post"]>;
export type FacetsQuery = Query<paths["/api/products/facets"]["get"]>;
export type SuggestQuery = Query<paths["/api/products/suggest"]["get"]>;
export type ReviewQuery = Query<paths["/api/products/{product_id}/reviews"]["get"]>;
export type UserOrdersQuery = Query<paths["/api/orders/user/{user_id}"]["get"]>;
export type PageQuery = Query<paths["/api/inventory/low-stock"]["get"]>;

/** An error answer: branch on `code` (stable), show `message`. An answer that
 * is not JSON at all (a proxy's HTML error page) has the code `not_json`. */
export class ShopApiError extends Error {
  readonly status: number;
  readonly code: ErrorBody["code"];
  readonly details: ErrorBody["details"];
  readonly errors: ErrorBody["errors"];

  constructor(status: number, body: ErrorBody) {
    super(body.message);
    this.name = "ShopApiError";
    this.status = status;
    this.code = body.code;
    this.details = body.details;
    this.errors = body.errors;
  }
}

type QueryValues = Record<string, string | number | boolean | undefined>;

interface RequestOptions {
  body?: unknown;
  query?: QueryValues;
  headers?: Record<string, string>;
  /** Sent as the bearer instead of `token` (the refresh token, for refresh). */
  bearer?: string | undefined;
}

export class ShopClient {
  /** The access token sent as `Authorization: Bearer`; set by signup and login. */
  token: string | undefined;
  refreshToken: string | undefined;

  constructor(readonly baseUrl: string) {}

  private async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const url = new URL(path, this.baseUrl);
    for (const [name, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) url.searchParams.set(name, String(value));
    }
    const headers: Record<string, string> = { Accept: "application/json", ...options.headers };
    const bearer = options.bearer ?? this.token;
    if (bearer) headers.Authorization = `Bearer ${bearer}`;
    const init: RequestInit = { method, headers };
    if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    const response = await fetch(url, init);
    const text = await response.text();
    let data: unknown;
    try {
      data = text ? JSON.parse(text) : undefined;
    } catch {
      // Not the shop's answer: a proxy's or load balancer's page (an HTML 502).
      throw new ShopApiError(response.status, {
        code: "not_json",
        message: `HTTP ${response.status}: the answer is not JSON (${response.headers.get("Content-Type") ?? "no Content-Type"})`,
      });
    }
    if (!response.ok) throw new ShopApiError(response.status, data as ErrorBody);
    return data as T;
  }

  private keep(tokens: Tokens): Tokens {
    this.token = tokens.access_token;
    this.refreshToken = tokens.refresh_token;
    return tokens;
  }

  async signup(body: SignupBody): Promise<Tokens> {
    return this.keep(await this.request<Tokens>("POST", "/api/auth/signup", { body }));
  }

  async login(body: LoginBody): Promise<Tokens> {
    return this.keep(await this.request<Tokens>("POST", "/api/auth/login", { body }));
  }

  profile(): Promise<User> {
    return this.request("GET", "/api/auth/profile");
  }

  updateProfile(body: ProfileUpdateBody): Promise<User> {
    return this.request("PUT", "/api/auth/profile", { body });
  }

  /** A new access token, from the refresh token kept at signup or login. */
  async refresh(): Promise<Schemas["AccessTokenResponse"]> {
    const answer = await this.request<Schemas["AccessTokenResponse"]>("POST", "/api/auth/refresh", {
      bearer: this.refreshToken,
    });
    this.token = answer.access_token;
    return answer;
  }

  /** Revokes the access token and (given in the body) the refresh token. */
  logout(body: LogoutBody = {}): Promise<Schemas["MessageResponse"]> {
    return this.request("POST", "/api/auth/logout", { body });
  }

  requestPasswordReset(body: PasswordResetBody): Promise<Schemas["MessageResponse"]> {
    return this.request("POST", "/api/auth/password-reset", { body });
  }

  confirmPasswordReset(body: PasswordResetConfirmBody): Promise<Schemas["MessageResponse"]> {
    return this.request("POST", "/api/auth/password-reset/confirm", { body });
  }

  verifyEmail(body: VerifyEmailBody): Promise<User> {
    return this.request("POST", "/api/auth/verify-email", { body });
  }

  resendVerification(): Promise<Schemas["MessageResponse"]> {
    return this.request("POST", "/api/auth/verify-email/resend");
  }

  health(): Promise<Schemas["HealthResponse"]> {
    return this.request("GET", "/api/health");
  }

  logoutAll(): Promise<Schemas["MessageResponse"]> {
    return this.request("POST", "/api/auth/logout-all");
  }

  listProducts(query: ProductQuery = {}): Promise<ProductPage> {
    return this.request("GET", "/api/products", { query });
  }

  productFacets(query: FacetsQuery = {}): Promise<Schemas["FacetsResponse"]> {
    return this.request("GET", "/api/products/facets", { query });
  }

  suggest(query: SuggestQuery): Promise<Schemas["SuggestionsResponse"]> {
    return this.request("GET", "/api/products/suggest", { query });
  }

  getProduct(id: number): Promise<Product> {
    return this.request("GET", `/api/products/${id}`);
  }

  createProduct(body: ProductCreateBody): Promise<Product> {
    return this.request("POST", "/api/products", { body });
  }

  updateProduct(id: number, body: ProductUpdateBody): Promise<Product> {
    return this.request("PUT", `/api/products/${id}`, { body });
  }

  deleteProduct(id: number): Promise<void> {
    return this.request("DELETE", `/api/products/${id}`);
  }

  adjustStock(id: number, body: StockAdjustmentBody): Promise<Product> {
    return this.request("POST", `/api/products/${id}/stock`, { body });
  }

  stockMovements(id: number, query: PageQuery = {}): Promise<Schemas["StockMovementPageResponse"]> {
    return this.request("GET", `/api/products/${id}/stock-movements`, { query });
  }

  lowStock(query: PageQuery = {}): Promise<ProductPage> {
    return this.request("GET", "/api/inventory/low-stock", { query });
  }

  listReviews(productId: number, query: ReviewQuery = {}): Promise<Schemas["ReviewPageResponse"]> {
    return this.request("GET", `/api/products/${productId}/reviews`, { query });
  }

  createReview(productId: number, body: ReviewBody): Promise<Review> {
    return this.request("POST", `/api/products/${productId}/reviews`, { body });
  }

  updateReview(id: number, body: ReviewUpdateBody): Promise<Review> {
    return this.request("PUT", `/api/reviews/${id}`, { body });
  }

  deleteReview(id: number): Promise<void> {
    return this.request("DELETE", `/api/reviews/${id}`);
  }

  getCart(): Promise<Cart> {
    return this.request("GET", "/api/cart");
  }

  addToCart(body: CartAddBody): Promise<Cart> {
    return this.request("POST", "/api/cart", { body });
  }

  updateCartItem(itemId: number, body: CartUpdateBody): Promise<Cart> {
    return this.request("PUT", `/api/cart/${itemId}`, { body });
  }

  removeCartItem(itemId: number): Promise<Cart> {
    return this.request("DELETE", `/api/cart/${itemId}`);
  }

  clearCart(): Promise<Cart> {
    return this.request("DELETE", "/api/cart/clear");
  }

  /** Checkout; retrying with the same `idempotencyKey` never orders twice. */
  placeOrder(body: OrderCreateBody, idempotencyKey?: string): Promise<Order> {
    const headers: Record<string, string> = idempotencyKey
      ? { "Idempotency-Key": idempotencyKey }
      : {};
    return this.request("POST", "/api/orders", { body, headers });
  }

  listOrders(query: OrderQuery = {}): Promise<OrderPage> {
    return this.request("GET", "/api/orders", { query });
  }

  getOrder(id: number): Promise<Order> {
    return this.request("GET", `/api/orders/${id}`);
  }

  updateOrder(id: number, body: OrderUpdateBody): Promise<Order> {
    return this.request("PUT", `/api/orders/${id}`, { body });
  }

  cancelOrder(id: number): Promise<Order> {
    return this.request("POST", `/api/orders/${id}/cancel`);
  }

  payOrder(id: number, body: PayBody): Promise<Order> {
    return this.request("POST", `/api/orders/${id}/pay`, { body });
  }

  /** Admin: the order's payment attempts and what was refunded of each. */
  orderPayments(id: number): Promise<OrderPayments> {
    return this.request("GET", `/api/orders/${id}/payments`);
  }

  userOrders(userId: number, query: UserOrdersQuery = {}): Promise<OrderPage> {
    return this.request("GET", `/api/orders/user/${userId}`, { query });
  }
}
