"""Payments: pay an order, refund it when it is cancelled, apply provider
webhooks exactly once. Provider calls happen while the order's row is locked,
so two pays (or a pay and a cancel) of one order never both go through."""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm.attributes import set_committed_value

from app.db import unit_of_work, upsert
from app.errors import (
    AlreadyPaid,
    ApiError,
    Conflict,
    InvalidTransition,
    NotFound,
    PaymentDeclined,
    RefundFailed,
)
from app.extensions import db
from app.models import Order, OrderStatus, Payment, PaymentEvent, User
from app.models.types import utcnow
from app.services import notifications, orders
from app.services.orders import lock_order
from app.services.payment_providers import WebhookEvent, get_provider, major_units

log = logging.getLogger(__name__)


def _amount(order: Order) -> int:
    """The order's total in the provider's units (Stripe's ISK is not ISO's)."""
    try:
        return get_provider().minor_units(order.total_amount, order.currency)
    except ValueError:
        raise Conflict(f"{order.total_amount} cannot be charged in {order.currency}")


def _set_payment_status(order: Order, old: str, new: str) -> bool:
    """Compare-and-set of the payment status; the loaded order shows what was
    written, `updated_at` included (the column's onupdate had stamped the row
    after the cancel's own stamp, so a refunded cancel answered an
    `updated_at` the order did not have; found by review)."""
    values = {"payment_status": new, "updated_at": utcnow()}
    changed = db.session.execute(
        update(Order)
        .where(Order.id == order.id, Order.payment_status == old)
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if changed == 1:
        for name, value in values.items():
            set_committed_value(order, name, value)
    return changed == 1


def _mark_paid(order: Order) -> None:
    """unpaid -> paid, and pending -> processing through the order workflow."""
    _set_payment_status(order, "unpaid", "paid")
    orders.change_status(order, OrderStatus.PROCESSING)


def pay_order(user: User, order_id: int, payment_method: str) -> Order:
    """Charge the caller's pending, unpaid order in full. A decline raises
    PaymentDeclined after recording the attempt (its number keys the next one)."""
    order = lock_order(order_id, user)
    if order is None:
        raise NotFound("Order not found")
    # A cancelled order is cancelled, whether its money was given back or
    # never taken (API.md: "a cancelled one a 409 invalid_transition").
    if order.payment_status != "unpaid" and order.status != OrderStatus.CANCELLED:
        raise AlreadyPaid()
    if order.status != OrderStatus.PENDING:
        raise InvalidTransition(order.status, OrderStatus.PROCESSING)
    provider = get_provider()
    amount = _amount(order)
    attempts = db.session.scalars(
        select(Payment).where(Payment.order_id == order.id).order_by(Payment.attempt)
    ).all()
    attempt = len(attempts) + 1
    intent_id = next((p.intent_id for p in reversed(attempts) if p.intent_id), None)
    try:
        charge = provider.charge(
            order_id=order.id,
            amount=amount,
            currency=order.currency,
            payment_method=payment_method,
            intent_id=intent_id,
            attempt=attempt,
        )
    except ApiError as error:
        # A call that reached the provider under this attempt's keys: the
        # provider keeps its answer for them (Stripe: a day, 5xx included),
        # so the attempt is recorded and the next one sends new keys. Left
        # unrecorded, every retry replayed this error (found by review).
        if getattr(error, "provider_attempt", False):
            with unit_of_work():
                db.session.add(
                    Payment(
                        order_id=order.id,
                        provider=provider.name,
                        intent_id=getattr(error, "intent_id", None) or intent_id,
                        amount=amount,
                        currency=order.currency,
                        status="failed",
                        attempt=attempt,
                        failure_message=error.message[:500],
                    )
                )
        raise
    payment = Payment(
        order_id=order.id,
        provider=provider.name,
        intent_id=charge.intent_id,
        amount=amount,
        currency=order.currency,
        status="succeeded" if charge.succeeded else "failed",
        attempt=attempt,
        failure_message=charge.message[:500] or None,
    )
    if not charge.succeeded:
        # The declined attempt must outlive the 402 (which rolls the request
        # back): its number keys the next attempt, and a reused key would only
        # replay this decline. The order is untouched, so this commit holds the
        # attempt and nothing else.
        with unit_of_work():
            db.session.add(payment)
        raise PaymentDeclined(charge.message or "The payment was declined")
    db.session.add(payment)
    db.session.flush()
    _mark_paid(order)
    return order


def order_payments(order_id: int) -> dict[str, Any]:
    """An order's payment attempts, oldest first, amounts as money, and the
    total given back of them (for admins: partial refunds and refunded second
    charges show here)."""
    order = db.session.get(Order, order_id)
    if order is None:
        raise NotFound("Order not found")
    rows = db.session.scalars(
        select(Payment).where(Payment.order_id == order_id).order_by(Payment.attempt)
    ).all()
    attempts = [
        {
            "id": p.id,
            "provider": p.provider,
            "intent_id": p.intent_id,
            "amount": major_units(p.provider, p.amount, p.currency),
            "amount_refunded": major_units(p.provider, p.amount_refunded, p.currency),
            "currency": p.currency,
            "status": p.status,
            "attempt": p.attempt,
            "failure_message": p.failure_message,
            "created_at": p.created_at,
        }
        for p in rows
    ]
    refunded = sum((a["amount_refunded"] for a in attempts), Decimal(0))
    return {
        "order_id": order.id,
        "currency": order.currency,
        "payment_status": order.payment_status,
        "amount_refunded": refunded,
        "payments": attempts,
    }


def refund_if_paid(order: Order) -> Decimal | None:
    """Refund what a paid order's payment still holds (called while it is
    being cancelled, its row locked): the amount given back now, or None for
    an order that was not paid. A failed refund raises RefundFailed and the
    cancel rolls back."""
    status = db.session.scalar(select(Order.payment_status).where(Order.id == order.id))
    set_committed_value(order, "payment_status", status)
    if status != "paid":
        return None
    payment = db.session.scalars(
        select(Payment)
        .where(Payment.order_id == order.id, Payment.status == "succeeded")
        .order_by(Payment.attempt.desc())
    ).first()
    provider = get_provider()
    if payment is None or payment.intent_id is None:
        raise RefundFailed("No payment is recorded for this order; it was not cancelled")
    if payment.provider != provider.name:
        raise RefundFailed(
            f"The order was paid through '{payment.provider}', which is not configured; "
            "it was not cancelled"
        )
    # What partial refunds made at the provider left (Stripe refuses a refund
    # of more than the charge still holds).
    rest = payment.amount - payment.amount_refunded
    # Stripe gives back less when a part was refunded in its dashboard and
    # that event is not in yet: the email states what this cancel gave back.
    refund = provider.refund(order_id=order.id, intent_id=payment.intent_id, amount=rest)
    payment.status = "refunded"
    payment.amount_refunded = payment.amount
    _set_payment_status(order, "paid", "refunded")
    return major_units(payment.provider, refund.amount, payment.currency)


def handle_webhook(
    payload: bytes, signature: str | None, check_shape: Callable[[Any], None]
) -> None:
    """Verify a provider event and apply it once; a redelivery changes
    nothing. `check_shape(parsed body)` runs once the signature verifies
    (and raises for a body that is no event), never before."""
    provider = get_provider()
    event = provider.parse_webhook(payload, signature, check_shape)
    first = db.session.scalar(
        upsert(PaymentEvent)
        .values(provider=provider.name, event_id=event.id[:255], type=event.type[:100])
        .on_conflict_do_nothing()
        .returning(PaymentEvent.event_id)
    )
    if first is None:
        log.info("payment event %s already applied", event.id)
        return
    order = _event_order(event)
    if order is None:
        log.warning("payment event %s (%s) names no known order", event.id, event.type)
        return
    if event.type == "payment_intent.succeeded":
        _apply_succeeded(order, event, provider.name)
    elif event.type == "charge.refunded" and (event.fully_refunded or event.amount_refunded):
        if order.payment_status == "unpaid":
            # The refund of a payment whose success has not arrived yet
            # (events come in any order): not recorded, so the provider
            # delivers it again, after the success; acknowledged, it was lost
            # and the order stayed paid (found by review).
            if not _pays_in_full(order, event):
                # Its charge could never pay the order (`_apply_succeeded`
                # declines it): no success to wait for; a 409 was sent on
                # every delivery for good (found by review).
                log.warning("refund event %s is of a payment that paid nothing", event.id)
                return
            raise Conflict("The order has no payment yet; deliver this refund again later")
        if order.payment_status == "paid" and not _refunds_its_payment(order, event):
            # The refund of a payment that paid nothing (another amount,
            # currency or PaymentIntent): it marked the order refunded while
            # its money was still held, and its cancel then refunded nothing
            # (found by review).
            log.warning("refund event %s is not of order %s's payment", event.id, order.id)
            return
        if (event.fully_refunded or _record_partial_refund(order, event)) and (
            _set_payment_status(order, "paid", "refunded")
        ):
            db.session.execute(
                update(Payment)
                .where(Payment.order_id == order.id, Payment.status == "succeeded")
                .values(status="refunded", amount_refunded=Payment.amount)
            )
    elif event.type == "payment_intent.payment_failed":
        # The synchronous pay already answered 402 and recorded the attempt.
        log.info("payment of order %s failed (event %s)", order.id, event.id)


def _record_partial_refund(order: Order, event: WebhookEvent) -> bool:
    """A part of a paid order's payment given back at the provider: the order
    stays paid (and keeps its workflow status), the payment records the total
    refunded so far. Stripe's `amount_refunded` is cumulative, so the largest
    seen is the truth, whatever order the events arrive in. True when it is
    all of the payment, though the event did not say so (no `refunded`, no
    `amount`): the caller marks the order refunded, as for a full refund."""
    if order.payment_status != "paid":
        return False  # refunded in full already: a late partial event says less
    payment = db.session.scalars(
        select(Payment)
        .where(Payment.order_id == order.id, Payment.status == "succeeded")
        .order_by(Payment.attempt.desc())
        .limit(1)
    ).first()
    if payment is None:
        return False
    refunded = min(event.amount_refunded or 0, payment.amount)
    if refunded == payment.amount:
        return True
    if refunded > payment.amount_refunded:
        payment.amount_refunded = refunded
        log.warning(
            "order %s: %s of its payment's %s (%s, minor units) refunded at the provider",
            order.id,
            refunded,
            payment.amount,
            order.currency,
        )
    return False


def _pays_in_full(order: Order, event: WebhookEvent) -> bool:
    """Whether the event's payment is the order's amount in its currency
    (an event that does not say is taken at the order's)."""
    if event.currency is not None and event.currency != order.currency.lower():
        return False
    return event.amount is None or event.amount == _amount(order)


def _refunds_its_payment(order: Order, event: WebhookEvent) -> bool:
    """Whether a refund event is of the payment that paid the order (an
    event that names no PaymentIntent is taken as of the order's)."""
    if not _pays_in_full(order, event):
        return False
    if event.intent_id is None:
        return True
    paid_by = db.session.scalars(
        select(Payment.intent_id)
        .where(Payment.order_id == order.id, Payment.status == "succeeded")
        .order_by(Payment.attempt.desc())
    ).first()
    return paid_by is None or paid_by == event.intent_id


def _event_order(event: WebhookEvent) -> Order | None:
    order_id = event.order_id
    if order_id is None and event.intent_id:
        order_id = db.session.scalar(
            select(Payment.order_id).where(Payment.intent_id == event.intent_id).limit(1)
        )
    return lock_order(order_id) if order_id is not None else None


def _apply_succeeded(order: Order, event: WebhookEvent, provider: str) -> None:
    paid = order.payment_status != "unpaid"
    if paid and _is_recorded(order, event):
        return  # the synchronous pay got there first, or a redelivery
    if not _pays_in_full(order, event):
        # A payment the shop did not ask for (1 cent, another currency) pays
        # no order; it paid it (found by review). Left to a person.
        log.warning(
            "payment event %s took %s %s for order %s (%s %s, %s): not applied",
            event.id,
            event.amount,
            event.currency,
            order.id,
            order.total_amount,
            order.currency,
            order.payment_status,
        )
        return
    if paid:
        _refund_duplicate(order, event, provider)
        return
    payment = Payment(
        order_id=order.id,
        provider=provider,
        intent_id=event.intent_id,
        amount=_amount(order),
        currency=order.currency,
        status="succeeded",
        attempt=_next_attempt(order),
    )
    db.session.add(payment)
    db.session.flush()
    if order.status == OrderStatus.PENDING:
        _mark_paid(order)
        return
    if order.status != OrderStatus.CANCELLED:
        # An admin moved the unpaid order along (payment is no precondition
        # of processing, API.md): it takes the money; it was refunded (found
        # by review).
        _set_payment_status(order, "unpaid", "paid")
        return
    # Money arrived for an order that can no longer take it (cancelled by the
    # payment timeout meanwhile): give it back. A failed refund raises, the
    # event is not recorded, and the provider's redelivery tries again.
    log.warning("order %s was paid while %s: refunding", order.id, order.status)
    get_provider().refund(order_id=order.id, intent_id=payment.intent_id, amount=payment.amount)
    payment.status = "refunded"
    payment.amount_refunded = payment.amount
    _set_payment_status(order, "unpaid", "refunded")
    notifications.late_payment_refunded(order)


def _is_recorded(order: Order, event: WebhookEvent) -> bool:
    """Whether the event's PaymentIntent is one of the order's payments (not
    a failed one), or names none."""
    if event.intent_id is None:
        return True
    return (
        db.session.scalar(
            select(Payment.id)
            .where(
                Payment.order_id == order.id,
                Payment.intent_id == event.intent_id,
                Payment.status != "failed",
            )
            .limit(1)
        )
        is not None
    )


def _next_attempt(order: Order) -> int:
    last = db.session.scalar(
        select(db.func.max(Payment.attempt)).where(Payment.order_id == order.id)
    )
    return (last or 0) + 1


def _refund_duplicate(order: Order, event: WebhookEvent, provider: str) -> None:
    """A second PaymentIntent of the order's amount succeeded for an order
    that has had its payment: the customer was charged twice. It is refunded
    through the provider and recorded as a refunded attempt, so no later
    event of it refunds it again (a failed refund raises, the event is not
    recorded, and the provider's redelivery tries again). The order keeps
    its payment; the customer is told (their statement shows both charges)."""
    amount = _amount(order)
    log.warning(
        "order %s is %s, and PaymentIntent %s charged it again (event %s): refunding it",
        order.id,
        order.payment_status,
        event.intent_id,
        event.id,
    )
    get_provider().refund(order_id=order.id, intent_id=event.intent_id, amount=amount)
    db.session.add(
        Payment(
            order_id=order.id,
            provider=provider,
            intent_id=event.intent_id,
            amount=amount,
            amount_refunded=amount,
            currency=order.currency,
            status="refunded",
            attempt=_next_attempt(order),
            failure_message="A second payment of a paid order: refunded",
        )
    )
    notifications.second_payment_refunded(order)
