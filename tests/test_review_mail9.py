"""Review round 9 of what the emails say: user text (product names, shipping
addresses, email addresses) with markup, quotes, line breaks, bidi overrides,
encoded words and long runs, in the subject, the text part and the HTML part
of every email, as the SMTP server received them (the `smtp_server` fixture),
parsed by the standard library; and the links built from FRONTEND_URL."""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.helpers import PASSWORD, VISA, auth, fill_cart, pay, place_order, start_up_error

HOSTILE_NAME = (
    'Crème <script>alert(1)</script> & "q" \'s\' <a href="javascript:alert(1)">x</a> ☃ ' + "ß" * 120
)
# Line breaks as a customer's client sends them (CRLF, LF, CR alone), markup,
# a run longer than any line SMTP takes, and non-ASCII.
ADDRESS_LINES = ['Flat <b>1</b> & "Co"', "221B Baker Street", "W" * 400, "London ☃"]
HOSTILE_ADDRESS = "\r\n".join(ADDRESS_LINES[:2]) + "\n" + ADDRESS_LINES[2] + "\r" + ADDRESS_LINES[3]
HTML_TAGS = {"html", "head", "meta", "title", "body", "h1", "h2", "p", "a", "br", "strong", "code"}
HTML_TAGS |= {"table", "thead", "tbody", "tfoot", "tr", "th", "td"}
MOVED = "new&addr@example.com"  # an email change's new address
RLO, PDF, LRI, PDI = "\u202e", "\u202c", "\u2066", "\u2069"


@pytest.fixture
def received(smtp_server):
    """The bytes of each message as the relay received them, in the order of
    `smtp_server.messages` (the fixture keeps them parsed only)."""
    raw: list[bytes] = []
    handle = smtp_server.sink.handle_DATA

    async def keep(server, session, envelope):
        reply = await handle(server, session, envelope)
        raw.append(envelope.content)
        return reply

    smtp_server.sink.handle_DATA = keep
    return raw


class Rendered(HTMLParser):
    """An HTML part as a reader sees it: its tags, its links, and its text
    with whitespace collapsed (HTML shows a line break only at `<br>` or a
    block's end)."""

    BLOCKS = {"p", "h1", "h2", "tr", "title"}

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.hrefs: list[str | None] = []
        self.chunks: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "a":
            self.hrefs.append(dict(attrs).get("href"))
        if tag == "br":
            self.chunks.append("\n")

    def handle_endtag(self, tag):
        if tag in self.BLOCKS:
            self.chunks.append("\n")

    def handle_data(self, data):
        self.chunks.append(re.sub(r"[ \t\n\r\f]+", " ", data))

    @property
    def lines(self) -> list[str]:
        return [line.strip() for line in "".join(self.chunks).split("\n") if line.strip()]


def wire_checks(raw: bytes) -> None:
    """SMTP's limits on what went over the wire: 7-bit (every recipient here is
    ASCII), CRLF line ends only, no line past 998 octets (RFC 5321 4.5.3.1.6);
    the stdlib's encoders keep them to 78."""
    assert raw.isascii()
    assert raw.count(b"\r") == raw.count(b"\n") == raw.count(b"\r\n")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78


def checked(app, message, to: str) -> tuple[str, str]:
    """The headers every email carries and its two parts (text, HTML), with
    their charset; the parts' text with the wire's CRLF read as LF."""
    assert message["From"] == app.config["MAIL_DEFAULT_SENDER"]
    assert message["To"] == to and message["X-Rcpt-To"] == to
    assert message.get_all("Bcc") is None and message.get_all("Cc") is None
    assert re.fullmatch(r"<outbox-\d+\.\d+@localhost>", str(message["Message-ID"]))
    assert parsedate_to_datetime(str(message["Date"])).utcoffset().total_seconds() == 0
    assert message.get_content_type() == "multipart/alternative"
    plain, html = message.iter_parts()
    assert (plain.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert plain.get_content_charset() == html.get_content_charset() == "utf-8"
    return tuple(part.get_content().replace("\r\n", "\n") for part in (plain, html))


def html_checks(html: str, links: list[str]) -> Rendered:
    """No markup but the template's, and only the template's links."""
    rendered = Rendered(html)
    assert set(rendered.tags) <= HTML_TAGS, set(rendered.tags) - HTML_TAGS
    assert rendered.hrefs == links
    return rendered


def open_bidi(text: str) -> list[str]:
    """The bidi embeddings, overrides and isolates still open at the end of
    `text` (Unicode UAX #9 X1-X8; a line break ends them all): the ones the
    text after it would be shown in."""
    stack: list[str] = []
    for char in text:
        if char in "\n\r\u2029":
            stack = []
        elif char in "\u202a\u202b\u202d\u202e":
            stack.append("embedding")
        elif char in "\u2066\u2067\u2068":
            stack.append("isolate")
        elif char == PDF and stack and stack[-1] == "embedding":
            stack.pop()
        elif char == PDI and "isolate" in stack:
            while stack.pop() != "isolate":
                pass
    return stack


def new_product(client, admin_token, **fields) -> SimpleNamespace:
    body = {"price": "5.00", "stock": 10, "category": "<b>General</b>", **fields}
    response = client.post("/api/products", json=body, headers=auth(admin_token))
    assert response.status_code == 201, response.get_json()
    return SimpleNamespace(**response.get_json())


def order(client, token, product, quantity=1, address=HOSTILE_ADDRESS) -> int:
    fill_cart(client, token, (product, quantity))
    response = place_order(client, token, {"shipping_address": address})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


# --- order emails ------------------------------------------------------------------------


def test_every_order_email_escapes_user_text_and_keeps_within_smtp_limits(
    app, client, buyer, admin_token, smtp_server, received, deliver_outbox
):
    """Order placed, each status, a cancel that refunds: markup in a product
    name and an address is text in the HTML part (no tag, no link of its
    own), verbatim in the text part; the wire stays 7-bit, CRLF, short lines."""
    user, token = buyer
    product = new_product(client, admin_token, name=HOSTILE_NAME, price="1299.30")
    kept = order(client, token, product, 2)
    for status in ("processing", "shipped", "delivered"):
        response = client.put(
            f"/api/orders/{kept}", json={"status": status}, headers=auth(admin_token)
        )
        assert response.status_code == 200, response.get_json()
    cancelled = order(client, token, product, 1)
    assert pay(client, token, cancelled, VISA).status_code == 200
    assert client.post(f"/api/orders/{cancelled}/cancel", headers=auth(token)).status_code == 200

    count = deliver_outbox()
    messages = smtp_server.wait_for(count)
    subjects = [str(m["Subject"]) for m in messages]
    assert subjects == [
        f"Shop: order #{kept} confirmed",
        f"Shop: order #{kept} is being prepared",
        f"Shop: order #{kept} has shipped",
        f"Shop: order #{kept} was delivered",
        f"Shop: order #{cancelled} confirmed",
        f"Shop: order #{cancelled} is being prepared",
        f"Shop: order #{cancelled} was cancelled",
    ]
    assert len(received) == len(messages)
    for raw, message in zip(received, messages, strict=True):
        wire_checks(raw)
        text, html = checked(app, message, user.email)
        number = kept if str(kept) in str(message["Subject"]) else cancelled
        quantity, subtotal = (2, "2,598.60 USD") if number == kept else (1, "1,299.30 USD")
        assert f"- {HOSTILE_NAME} x {quantity} @ 1,299.30 USD = {subtotal}\n" in text
        assert f"Total: {subtotal}\n" in text
        assert f"See your order: http://localhost:3000/orders/{number}\n" in text
        assert "<script>" not in html
        rendered = html_checks(html, [f"http://localhost:3000/orders/{number}"])
        assert any(HOSTILE_NAME in line for line in rendered.lines)
        assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;q&#34; &#39;s&#39;" in html
    cancel_text, cancel_html = checked(app, messages[-1], user.email)
    assert "Refunded: 1,299.30 USD to your original payment method." in cancel_text
    assert "Refunded: 1,299.30 USD to your original payment method." in Rendered(cancel_html).lines


def test_a_multi_line_address_keeps_its_lines_in_both_parts(
    app, client, buyer, admin_token, smtp_server, deliver_outbox
):
    """An address's line breaks are its own (API.md takes them): the text
    part shows each line; the HTML part showed them run together on one
    line ("...Baker Street WWW... London"), as HTML ignores a line break
    in its source."""
    user, token = buyer
    number = order(client, token, new_product(client, admin_token, name="Sticker"))
    assert deliver_outbox() == 1
    [message] = smtp_server.wait_for(1)
    text, html = checked(app, message, user.email)
    assert "Shipping to: " + "\n".join(ADDRESS_LINES) + "\n" in text
    lines = html_checks(html, [f"http://localhost:3000/orders/{number}"]).lines
    start = lines.index(f"Shipping to: {ADDRESS_LINES[0]}")
    assert lines[start + 1 : start + len(ADDRESS_LINES)] == ADDRESS_LINES[1:]


def test_the_text_part_of_an_order_email_starts_with_its_greeting(
    app, client, buyer, admin_token, smtp_server, deliver_outbox
):
    """Every order email's text part began with an empty line (the template's
    `{% set %}` line); the account emails' did not."""
    user, token = buyer
    number = order(client, token, new_product(client, admin_token, name="Mug"), 1, "1 Main St")
    response = client.put(
        f"/api/orders/{number}", json={"status": "processing"}, headers=auth(admin_token)
    )
    assert response.status_code == 200
    assert deliver_outbox() == 2
    for message in smtp_server.wait_for(2):
        text, _html = checked(app, message, user.email)
        assert text.startswith(f"Hello {user.username},\n\n"), repr(text[:40])


# --- the low-stock alert's subject -------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "=?utf-8?q?Evil=0D=0ABcc:_victim@example.com?=",
        "Thé =?utf-8?q?Evil=0D=0ABcc:_victim@example.com?=",
        "=?utf-8?b?RXZpbA0KDQpmYWtlIGJvZHk=?=",
        "=?utf-8?q?Free_gift?=",
    ],
)
def test_an_encoded_word_in_a_product_name_is_text_in_the_subject_never_a_header(
    app, client, make_user, login, make_product, smtp_server, received, deliver_outbox, name
):
    """The low-stock subject holds the product's name. A name written as an
    RFC 2047 encoded word (the API takes it: it has no control character)
    was decoded when the subject was set, so `=0D=0A` in it became a line
    break: a `Bcc:` header of the name's choosing, or the rest of the
    subject pushed into the body. It is shown as written instead."""
    admin = make_user(admin=True)
    token = login(admin)["access_token"]
    product = make_product(stock=10, low_stock_threshold=5)
    response = client.put(
        f"/api/products/{product.id}",
        json={"name": name, "low_stock_threshold": 10},
        headers=auth(token),
    )
    assert response.status_code == 200, response.get_json()
    assert deliver_outbox() == 1
    [message] = smtp_server.wait_for(1)
    [raw] = received
    wire_checks(raw)
    assert str(message["Subject"]) == f"Shop: low stock of {name} (#{product.id}): 10 left"
    text, html = checked(app, message, admin.email)
    assert f"{name} (product #{product.id}) is low on stock: 10 left" in text
    shown = f"{name} (product #{product.id}) is low on stock: 10 left"
    assert any(line.startswith(shown) for line in html_checks(html, []).lines)


# --- bidi controls -----------------------------------------------------------------------


def test_a_bidi_override_in_a_product_name_ends_with_the_name(
    app, client, buyer, make_user, login, smtp_server, deliver_outbox
):
    """A right-to-left override (U+202E) or an isolate left open in a product
    name ran on past it: the rest of the subject line, and of the item's line
    ("x 1 @ 5.00 USD = 5.00 USD"), showed reversed, its digits too. What a
    name opens is closed where the name ends; the name itself is kept."""
    admin = make_user(admin=True)
    admin_token = login(admin)["access_token"]
    user, token = buyer
    names = [f"Widget {RLO}Pro", f"Gadget {LRI}{RLO}abc{PDI}{RLO}x"]
    products = [new_product(client, admin_token, name=n, stock=6) for n in names]
    for product in products:
        order(client, token, product, 1, "1 Main St")  # 5 left: at the threshold
    count = deliver_outbox()
    messages = smtp_server.wait_for(count)
    alerts = [m for m in messages if "low stock" in str(m["Subject"])]
    orders = [m for m in messages if "low stock" not in str(m["Subject"])]
    assert len(alerts) == len(orders) == 2
    for name, product, alert, placed in zip(names, products, alerts, orders, strict=True):
        subject = str(alert["Subject"])
        head, found, _tail = subject.partition(f" (#{product.id}): 5 left")
        prefix = f"Shop: low stock of {name}"
        assert found and head.startswith(prefix) and set(head[len(prefix) :]) <= {PDF, PDI}
        assert open_bidi(head) == [], repr(subject)
        text, html = checked(app, alert, admin.email)
        line = next(line for line in text.splitlines() if "(product #" in line)
        assert open_bidi(line[: line.index(" (product #")]) == [], repr(line)
        paragraph = next(line for line in Rendered(html).lines if "(product #" in line)
        assert open_bidi(paragraph[: paragraph.index(" (product #")]) == [], repr(paragraph)
        text, _html = checked(app, placed, user.email)
        line = next(line for line in text.splitlines() if line.startswith("- "))
        assert open_bidi(line[: line.index(" x 1 @ 5.00 USD")]) == [], repr(line)


# --- account emails: links ---------------------------------------------------------------


@pytest.mark.parametrize("base", ["http://localhost:3000", "https://shop.example.com/app"])
def test_account_links_are_the_frontend_url_and_a_url_safe_token(make_app, base):
    """Verification (signup, email change) and reset links: FRONTEND_URL, the
    page, one `token` parameter that needs no quoting; the same link in the
    text part and as the HTML part's only href; the address (with `&` and a
    quote) escaped in HTML."""
    from app.tasks.runner import drain
    from tests.smtp import SmtpServer

    server = SmtpServer().start()
    try:
        application = make_app(overrides={**server.config(), "FRONTEND_URL": base})
        client = application.test_client()
        email = "o'brien&co+x@example.com"
        body = {"username": "o.brien-9", "email": email, "password": PASSWORD}
        signup = client.post("/api/auth/signup", json=body)
        assert signup.status_code == 201, signup.get_json()
        access = signup.get_json()["access_token"]
        change = {"email": MOVED, "current_password": PASSWORD}
        assert client.put("/api/auth/profile", json=change, headers=auth(access)).status_code == 200
        reset = client.post("/api/auth/password-reset", json={"email": MOVED})
        assert reset.status_code == 202, reset.get_json()
        with application.app_context():
            drain()
        messages = server.wait_for(3)
    finally:
        server.stop()
    pages = {"verify-email": [], "reset-password": []}
    for message, to in zip(messages, [email, MOVED, MOVED], strict=True):
        text, html = checked(application, message, to)
        [link] = re.findall(r"^(http\S*)$", text, re.MULTILINE)
        html_checks(html, [link])
        parts = urlsplit(link)
        assert link.startswith(base + "/") and parts.fragment == ""
        page = parts.path.removeprefix(urlsplit(base).path).lstrip("/")
        [token] = parse_qs(parts.query, strict_parsing=True)["token"]
        assert parts.query == f"token={token}" and re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
        pages[page].append(to)
        if page == "verify-email":
            assert f"Please confirm that {to} is your email address" in text
            shown = f"Please confirm that {to} is your email address for Shop"
            assert shown in " ".join(Rendered(html).lines)
            assert to.replace("&", "&amp;").replace("'", "&#39;") in html
    assert pages == {
        "verify-email": [email, MOVED],
        "reset-password": [MOVED],
    }


@pytest.mark.parametrize(
    "value",
    [
        "https://shop.example.com/my shop",  # the text part's link ended at the space
        "https://shop.example.com/\tapp",
        'https://shop.example.com/"app"',
        "https://shop.example.com/<app>",
    ],
)
def test_a_frontend_url_a_link_cannot_carry_stops_start_up(tmp_path, value):
    """FRONTEND_URL is the base of every mailed link, written as it is. A
    space in it started, and each reset and verification link in a text
    part ended at the space (a reader links `https://shop.example.com/my`
    only); quotes and angle brackets end a link in a text part too."""
    error = start_up_error(tmp_path, FRONTEND_URL=value)
    assert "FRONTEND_URL" in error, error[-400:]


def test_the_frontend_urls_a_link_can_carry_start(tmp_path):
    for value in ("https://shop.example.com/app/", "https://bücher.de", "http://[::1]:3000/a%20b"):
        assert start_up_error(tmp_path, FRONTEND_URL=value) == "", value


@pytest.mark.parametrize(
    ("text", "closed"),
    [
        ("plain", "plain"),
        (f"a{RLO}b", f"a{RLO}b{PDF}"),
        (f"a{RLO}b{PDF}", f"a{RLO}b{PDF}"),
        (f"{LRI}{RLO}x", f"{LRI}{RLO}x{PDF}{PDI}"),
        (f"{LRI}{RLO}x{PDI}", f"{LRI}{RLO}x{PDI}"),  # the PDI closes the override too
        (f"{RLO}x\ny", f"{RLO}x\ny{PDF}"),  # closed after the line, as HTML may run on
        (f"x{PDI}{PDF}", f"x{PDI}{PDF}"),  # closers with nothing open change nothing
    ],
)
def test_close_bidi_closes_only_what_the_text_leaves_open(text, closed):
    from app.utils.text import close_bidi

    assert close_bidi(text) == closed
    assert open_bidi(close_bidi(text)) == []
