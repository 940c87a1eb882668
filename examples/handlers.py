"""Task handlers for the smq example workflows: a small, made-up web shop.

Every function here is an ordinary Python function registered under a resource name with
`@handler("name")`. A Task state reaches it through any of the three Resource forms smq accepts:

* the bare name:          ``"Resource": "charge-card"``
* a Lambda function ARN:  ``"Resource": "arn:aws:lambda:us-east-1:123456789012:function:charge-card"``
  (an alias or version qualifier such as ``...:function:check-stock:live`` is accepted too)
* the Lambda integration: ``"Resource": "arn:aws:states:::lambda:invoke"`` with
  ``"Parameters": {"FunctionName": "charge-card", "Payload.$": "$"}`` -- the result then comes back
  wrapped as ``{"Payload": <result>, "StatusCode": 200, ...}``, as in AWS.

Failures are reported the ASL way:

* ``raise TaskError("Payment.Declined", "card declined: insufficient funds")`` fails the Task with that
  exact error name and cause, which Retry and Catch match in ``ErrorEquals``;
* any other exception fails it with the exception's class name as the error (``InventoryServiceUnavailable``
  below) and ``str(exc)`` as the cause.

Everything is deterministic and offline: prices, stock levels and risk scores come from the tables below
or from a SHA-256 of the input, never from a clock, a random generator or the network. Simulated outages
are driven by the input (``simulateOutages``, ``simulateGatewayTimeouts``) and counted with
``ctx.attempt`` -- the engine's own 1-based attempt counter for the current state -- so a run behaves the
same every time, in any process, with no global state.

Money is always an integer number of cents in USD, the only currency the shop sells in.

Run any example with, e.g.::

    smq run examples/order_processing.yaml --handlers examples/handlers.py --input @examples/inputs/order.json
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from smq import TaskContext, TaskError, handler

# --------------------------------------------------------------------------------------------------
# Reference data
# --------------------------------------------------------------------------------------------------

#: The shop's catalogue: SKU -> product name, unit price in cents, units on hand.
CATALOGUE: dict[str, dict[str, Any]] = {
    "BOOK-ASL-101": {"name": "Amazon States Language, Illustrated", "priceCents": 3499, "stock": 120},
    "MUG-STATE": {"name": "'Succeed' coffee mug", "priceCents": 1250, "stock": 40},
    "STICKER-PACK": {"name": "State machine sticker pack", "priceCents": 399, "stock": 1000},
    "HOODIE-XL": {"name": "Workflow hoodie (XL)", "priceCents": 5900, "stock": 8},
    "KEYBOARD-MECH": {"name": "Mechanical keyboard", "priceCents": 18900, "stock": 15},
    "MONITOR-4K": {"name": "27-inch 4K monitor", "priceCents": 42900, "stock": 3},
    "LAPTOP-PRO": {"name": "Pro laptop, 32 GB", "priceCents": 229900, "stock": 2},
    "VINTAGE-RADIO": {"name": "Vintage valve radio", "priceCents": 8900, "stock": 0},
}

#: Lines with at least this many units get VOLUME_DISCOUNT_PERCENT off.
VOLUME_DISCOUNT_MIN_QUANTITY = 10
VOLUME_DISCOUNT_PERCENT = 10

#: Sales tax / VAT by destination country, in percent. Countries not listed pay none.
TAX_RATE_PERCENT: dict[str, int] = {"GB": 20, "DE": 19, "FR": 20, "IE": 23, "CA": 5, "US": 0}

#: Shipping prices in cents; standard shipping is free from FREE_SHIPPING_FROM_CENTS (subtotal).
SHIPPING_CENTS: dict[str, int] = {"standard": 499, "express": 1499}
FREE_SHIPPING_FROM_CENTS = 5000

#: Test card numbers (the usual payment-provider conventions) and how the gateway answers them.
DECLINED_CARDS: dict[str, str] = {
    "4000000000009995": "card declined: insufficient funds",
    "4000000000000002": "card declined: do not honour",
}
EXPIRED_CARDS = frozenset({"4000000000000069"})

#: Throwaway-mailbox domains: a strong fraud signal.
DISPOSABLE_EMAIL_DOMAINS = frozenset({"mailinator.com", "guerrillamail.com", "trashmail.io"})

#: Credit limits by customer tier, in cents. Customer ids look like "CUST-<tier>-<n>"; guests get none.
CREDIT_LIMIT_CENTS: dict[str, int] = {"GOLD": 500_000, "SILVER": 150_000, "BRONZE": 50_000}

SUPPORTED_CURRENCIES = frozenset({"USD"})
SHIPPING_METHODS = frozenset(SHIPPING_CENTS)
MAX_QUANTITY_PER_LINE = 100
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


class InventoryServiceUnavailable(Exception):
    """The (simulated) warehouse inventory service is down. Its ASL error name is the class name."""


def _require(payload: Any, *fields: str) -> dict[str, Any]:
    """Check that the payload is an object carrying every named field; fail with `Input.Invalid` if not."""
    if not isinstance(payload, dict):
        raise TaskError("Input.Invalid", f"expected a JSON object, got {type(payload).__name__}")
    missing = [f for f in fields if f not in payload]
    if missing:
        raise TaskError("Input.Invalid", f"missing field(s): {', '.join(missing)}")
    return payload


def _short_id(prefix: str, *parts: Any) -> str:
    """A stable identifier derived from its parts: the same inputs always give the same id."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:10]
    return f"{prefix}_{digest}"


def _product(sku: str) -> dict[str, Any]:
    try:
        return CATALOGUE[sku]
    except KeyError:
        raise TaskError("Catalog.UnknownSku", f"no product with SKU {sku!r}") from None


def _format_usd(cents: int) -> str:
    return f"${cents // 100:,}.{cents % 100:02d}"


def _check_card(card_number: str) -> None:
    """Raise the gateway's answer for a test card that is refused."""
    if card_number in DECLINED_CARDS:
        raise TaskError("Payment.Declined", DECLINED_CARDS[card_number])
    if card_number in EXPIRED_CARDS:
        raise TaskError("Payment.CardExpired", "card declined: expired card")
    if not (card_number.isdigit() and 12 <= len(card_number) <= 19):
        raise TaskError("Payment.InvalidCard", "card number must be 12 to 19 digits")


# --------------------------------------------------------------------------------------------------
# Order intake and pricing
# --------------------------------------------------------------------------------------------------


@handler("validate-order")
def validate_order(order: dict[str, Any]) -> dict[str, Any]:
    """Validate an incoming order and return it normalised.

    Raises ``Order.Invalid`` (a business error: retrying cannot fix it) when a required field is
    missing or malformed. Normalisation lower-cases the e-mail, upper-cases the country and fills in
    the defaults ``currency = "USD"`` and ``shippingMethod = "standard"``.
    """
    problems: list[str] = []
    if not isinstance(order, dict):
        raise TaskError("Order.Invalid", "the order must be a JSON object")
    order_id = order.get("orderId")
    if not isinstance(order_id, str) or not order_id:
        problems.append("orderId is required")
    customer = order.get("customer")
    if not isinstance(customer, dict):
        problems.append("customer is required")
        customer = {}
    email = str(customer.get("email", "")).strip().lower()
    if not _EMAIL.match(email):
        problems.append(f"customer.email {customer.get('email')!r} is not an e-mail address")
    if not customer.get("id"):
        problems.append("customer.id is required")
    currency = order.get("currency", "USD")
    if currency not in SUPPORTED_CURRENCIES:
        problems.append(
            f"currency {currency!r} is not supported (only {', '.join(sorted(SUPPORTED_CURRENCIES))})"
        )
    shipping = order.get("shippingMethod", "standard")
    if shipping not in SHIPPING_METHODS:
        problems.append(f"shippingMethod {shipping!r} is not one of {', '.join(sorted(SHIPPING_METHODS))}")
    items = order.get("lineItems")
    if not isinstance(items, list) or not items:
        problems.append("lineItems must be a non-empty list")
        items = []
    for i, item in enumerate(items):
        quantity = item.get("quantity") if isinstance(item, dict) else None
        if not isinstance(item, dict) or not item.get("sku"):
            problems.append(f"lineItems[{i}].sku is required")
        if (
            not isinstance(quantity, int)
            or isinstance(quantity, bool)
            or not 1 <= quantity <= MAX_QUANTITY_PER_LINE
        ):
            problems.append(f"lineItems[{i}].quantity must be an integer from 1 to {MAX_QUANTITY_PER_LINE}")
    if problems:
        raise TaskError("Order.Invalid", f"order {order_id or '?'}: " + "; ".join(problems))

    return {
        "orderId": order_id,
        "customer": {
            "id": customer["id"],
            "name": customer.get("name", ""),
            "email": email,
            "country": str(customer.get("country", "US")).upper(),
        },
        "payment": order.get("payment", {}),
        "currency": currency,
        "shippingMethod": shipping,
        "lineItems": [{"sku": item["sku"], "quantity": item["quantity"]} for item in items],
    }


@handler("price-line-item")
def price_line_item(line: dict[str, Any]) -> dict[str, Any]:
    """Price one order line from the catalogue, applying the volume discount.

    Input: ``{"lineNumber": 1, "sku": "MUG-STATE", "quantity": 12}``. Unknown SKUs fail with
    ``Catalog.UnknownSku``.
    """
    _require(line, "sku", "quantity")
    product = _product(line["sku"])
    quantity = int(line["quantity"])
    gross = product["priceCents"] * quantity
    discount = gross * VOLUME_DISCOUNT_PERCENT // 100 if quantity >= VOLUME_DISCOUNT_MIN_QUANTITY else 0
    return {
        "lineNumber": line.get("lineNumber"),
        "sku": line["sku"],
        "name": product["name"],
        "quantity": quantity,
        "unitPriceCents": product["priceCents"],
        "discountCents": discount,
        "lineTotalCents": gross - discount,
    }


@handler("calculate-totals")
def calculate_totals(request: dict[str, Any]) -> dict[str, Any]:
    """Add up priced lines, then tax (by destination country) and shipping.

    Input: ``{"lines": [<price-line-item results>], "country": "GB", "shippingMethod": "express"}``.
    Standard shipping is free once the subtotal reaches ``FREE_SHIPPING_FROM_CENTS``.
    """
    _require(request, "lines")
    subtotal = sum(int(line["lineTotalCents"]) for line in request["lines"])
    discounts = sum(int(line.get("discountCents", 0)) for line in request["lines"])
    rate = TAX_RATE_PERCENT.get(str(request.get("country", "US")).upper(), 0)
    tax = (subtotal * rate + 50) // 100  # round half up, in whole cents
    method = request.get("shippingMethod", "standard")
    shipping = 0 if method == "standard" and subtotal >= FREE_SHIPPING_FROM_CENTS else SHIPPING_CENTS[method]
    total = subtotal + tax + shipping
    return {
        "subtotalCents": subtotal,
        "discountCents": discounts,
        "taxRatePercent": rate,
        "taxCents": tax,
        "shippingCents": shipping,
        "totalCents": total,
        "totalFormatted": _format_usd(total),
    }


# --------------------------------------------------------------------------------------------------
# Risk checks
# --------------------------------------------------------------------------------------------------


@handler("fraud-score")
def fraud_score(request: dict[str, Any]) -> dict[str, Any]:
    """Score an order's fraud risk from 0 (safe) to 100 with a few transparent rules.

    Input: ``{"orderId", "customerId", "email", "country", "amountCents"}``. Decision: ``APPROVE``
    below 40, ``REVIEW`` from 40, ``REJECT`` from 70.
    """
    _require(request, "customerId", "email", "amountCents")
    reasons: list[str] = []
    score = 5
    domain = str(request["email"]).rsplit("@", 1)[-1].lower()
    if domain in DISPOSABLE_EMAIL_DOMAINS:
        score += 45
        reasons.append("disposable e-mail domain")
    if str(request["customerId"]).startswith("GUEST-"):
        score += 15
        reasons.append("guest checkout")
    amount = int(request["amountCents"])
    if amount >= 200_000:
        score += 30
        reasons.append("very high order value")
    elif amount >= 50_000:
        score += 10
        reasons.append("high order value")
    score = min(score, 100)
    decision = "REJECT" if score >= 70 else "REVIEW" if score >= 40 else "APPROVE"
    return {"orderId": request.get("orderId"), "score": score, "decision": decision, "reasons": reasons}


@handler("credit-check")
def credit_check(request: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Decide whether a customer's credit line covers an amount.

    Input: ``{"customerId": "CUST-GOLD-7", "amountCents": 48777}``. The limit comes from the tier in
    the customer id; guests and unknown tiers get no credit. Calls ``ctx.heartbeat()`` the way a
    long-running handler would, so the example also works under a HeartbeatSeconds setting.
    """
    _require(request, "customerId", "amountCents")
    ctx.heartbeat()
    parts = str(request["customerId"]).split("-")
    tier = parts[1] if len(parts) >= 3 and parts[0] == "CUST" else "NONE"
    limit = CREDIT_LIMIT_CENTS.get(tier, 0)
    amount = int(request["amountCents"])
    return {
        "customerId": request["customerId"],
        "tier": tier,
        "limitCents": limit,
        "approved": amount <= limit,
        "headroomCents": limit - amount,
    }


# --------------------------------------------------------------------------------------------------
# Inventory
# --------------------------------------------------------------------------------------------------


@handler("check-stock")
def check_stock(request: dict[str, Any]) -> dict[str, Any]:
    """Report, for each requested line, whether the warehouse has enough units.

    Input: ``{"items": [{"sku": "MONITOR-4K", "quantity": 5}, ...]}``.
    """
    _require(request, "items")
    lines = []
    for item in request["items"]:
        available = _product(item["sku"])["stock"]
        lines.append(
            {
                "sku": item["sku"],
                "requested": item["quantity"],
                "available": available,
                "inStock": available >= item["quantity"],
            }
        )
    shortages = [line["sku"] for line in lines if not line["inStock"]]
    return {"allInStock": not shortages, "shortages": shortages, "items": lines}


@handler("flaky-inventory")
def flaky_inventory(request: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Look up stock levels in a warehouse service that is down for the first few calls.

    Input: ``{"warehouse": "LHR-1", "skus": ["MONITOR-4K"], "failFirstAttempts": 2}``. Attempts 1 to
    ``failFirstAttempts`` of *this state in this execution* raise ``InventoryServiceUnavailable``; the
    count is ``ctx.attempt``, which the engine keeps per state and execution, so the outcome is the same
    on every run and needs no global state. Give the Task a Retry on ``InventoryServiceUnavailable``
    with ``MaxAttempts >= failFirstAttempts`` and it succeeds.
    """
    _require(request, "skus")
    failures = int(request.get("failFirstAttempts", 0))
    if ctx.attempt <= failures:
        raise InventoryServiceUnavailable(
            f"inventory service unavailable (execution {ctx.execution_name}, state {ctx.state_name}, "
            f"attempt {ctx.attempt} of {failures} simulated outage(s))"
        )
    levels = {sku: _product(sku)["stock"] for sku in request["skus"]}
    return {"warehouse": request.get("warehouse", "MAIN"), "levels": levels, "attempt": ctx.attempt}


@handler("reserve-stock")
def reserve_stock(request: dict[str, Any]) -> dict[str, Any]:
    """Reserve every line of an order, all or nothing.

    Input: ``{"orderId": "ORD-1001", "items": [{"sku": ..., "quantity": ...}, ...]}``. Fails with
    ``Inventory.OutOfStock`` naming each short line if any line cannot be covered.
    """
    _require(request, "orderId", "items")
    shortages = []
    for item in request["items"]:
        available = _product(item["sku"])["stock"]
        if available < item["quantity"]:
            shortages.append(f"{item['sku']}: requested {item['quantity']}, available {available}")
    if shortages:
        raise TaskError("Inventory.OutOfStock", f"order {request['orderId']}: " + "; ".join(shortages))
    return {
        "reservationId": _short_id("rsv", request["orderId"]),
        "orderId": request["orderId"],
        "units": sum(item["quantity"] for item in request["items"]),
        "status": "RESERVED",
    }


@handler("release-stock")
def release_stock(request: dict[str, Any]) -> dict[str, Any]:
    """Release whatever an order has reserved (compensation step; safe to call when nothing is held)."""
    _require(request, "orderId")
    return {"reservationId": _short_id("rsv", request["orderId"]), "status": "RELEASED"}


# --------------------------------------------------------------------------------------------------
# Payments
# --------------------------------------------------------------------------------------------------


@handler("charge-card")
def charge_card(request: dict[str, Any]) -> dict[str, Any]:
    """Charge a card in one step (authorise and capture).

    Input: ``{"orderId", "amountCents", "currency", "cardNumber"}``. Test cards in ``DECLINED_CARDS``
    fail with ``Payment.Declined``; ``EXPIRED_CARDS`` with ``Payment.CardExpired``.
    """
    _require(request, "orderId", "amountCents", "cardNumber")
    _check_card(str(request["cardNumber"]))
    amount = int(request["amountCents"])
    if amount <= 0:
        raise TaskError("Payment.InvalidAmount", f"cannot charge {amount} cents")
    return {
        "transactionId": _short_id("txn", request["orderId"], amount),
        "amountCents": amount,
        "currency": request.get("currency", "USD"),
        "cardLast4": str(request["cardNumber"])[-4:],
        "status": "CAPTURED",
    }


@handler("refund")
def refund(request: dict[str, Any]) -> dict[str, Any]:
    """Refund an order's charge (compensation step; idempotent, keyed by order id).

    Input: ``{"orderId", "amountCents", "reason"}``.
    """
    _require(request, "orderId", "amountCents")
    return {
        "refundId": _short_id("rfd", request["orderId"]),
        "orderId": request["orderId"],
        "amountCents": int(request["amountCents"]),
        "reason": request.get("reason", "requested_by_customer"),
        "status": "REFUNDED",
    }


@handler("payment-gateway")
def payment_gateway(request: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """A two-step card gateway: ``operation`` is ``"authorize"`` or ``"capture"``.

    authorize -- input ``{"orderId", "amountCents", "currency", "card": {"number", ...},
    "simulateGatewayTimeouts": n}``. The first ``n`` attempts (``ctx.attempt``) fail with
    ``Payment.GatewayTimeout``, a transient error worth retrying. Card 4000000000009995 then fails with
    ``Payment.Declined`` / "card declined: insufficient funds", which no retry can fix.

    capture -- input ``{"authorizationId", "amountCents"}``.
    """
    _require(request, "operation")
    operation = request["operation"]
    if operation == "authorize":
        _require(request, "orderId", "amountCents", "card")
        if ctx.attempt <= int(request.get("simulateGatewayTimeouts", 0)):
            raise TaskError(
                "Payment.GatewayTimeout",
                f"gateway did not answer in time (attempt {ctx.attempt} of state {ctx.state_name})",
            )
        _check_card(str(request["card"].get("number", "")))
        return {
            "authorizationId": _short_id("auth", request["orderId"], request["amountCents"]),
            "amountCents": int(request["amountCents"]),
            "currency": request.get("currency", "USD"),
            "status": "AUTHORIZED",
            "attempt": ctx.attempt,
        }
    if operation == "capture":
        _require(request, "authorizationId", "amountCents")
        return {
            "captureId": _short_id("cap", request["authorizationId"]),
            "authorizationId": request["authorizationId"],
            "amountCents": int(request["amountCents"]),
            "status": "CAPTURED",
        }
    raise TaskError("Payment.UnsupportedOperation", f"unknown operation {operation!r}")


# --------------------------------------------------------------------------------------------------
# Notifications
# --------------------------------------------------------------------------------------------------


@handler("send-confirmation")
def send_confirmation(message: dict[str, Any]) -> dict[str, Any]:
    """'Send' an order confirmation e-mail: builds the message and returns it with a stable message id.

    Input: ``{"orderId", "to", "subject", "totalCents", "transactionId"}``. Nothing leaves the machine.
    """
    _require(message, "orderId", "to")
    total = message.get("totalCents")
    body = f"Thank you for your order {message['orderId']}."
    if total is not None:
        body += f" We charged {_format_usd(int(total))}"
        body += f" (transaction {message['transactionId']})." if message.get("transactionId") else "."
    return {
        "messageId": _short_id("msg", message["orderId"], message["to"]),
        "to": message["to"],
        "subject": message.get("subject", f"Order {message['orderId']}"),
        "body": body,
        "status": "QUEUED",
    }


# --------------------------------------------------------------------------------------------------
# Shipping (examples/shipping.yaml, chained from order processing)
# --------------------------------------------------------------------------------------------------

#: At most this many items go in one parcel.
ITEMS_PER_PARCEL = 10
#: Orders at or above this total ship express.
EXPRESS_THRESHOLD_CENTS = 30_000


@handler("plan-shipment")
def plan_shipment(request: dict[str, Any]) -> dict[str, Any]:
    """Split an order into parcels and pick the service from the order total."""
    order = _require(request, "orderId", "itemCount", "totalCents")
    count = max(1, -(-int(order["itemCount"]) // ITEMS_PER_PARCEL))
    service = "express" if order["totalCents"] >= EXPRESS_THRESHOLD_CENTS else "standard"
    return {"service": service, "parcels": [{"number": n, "of": count} for n in range(1, count + 1)]}


@handler("book-carrier")
def book_carrier(request: dict[str, Any]) -> dict[str, Any]:
    """Book one parcel with the carrier; the tracking number is derived from the order and parcel."""
    booking = _require(request, "orderId", "service", "parcel")
    parcel = booking["parcel"]
    return {
        "trackingNumber": _short_id("TRK", booking["orderId"], parcel["number"]).upper(),
        "service": booking["service"],
        "parcel": f"{parcel['number']}/{parcel['of']}",
    }
