-- Orders, their lines, and the transactional outbox of OrderEvents.
-- (The schema is "orders", not "order": ORDER is an SQL reserved word.)
--
-- Fixes over the seed design: amounts were DECIMAL(10,2) and the currency defaulted to USD; here
-- they are bigint minor units with a CHECKed char(3) currency, the total is CHECKed to be subtotal +
-- shipping + tax, each line's total to be unit price x quantity, and a composite key keeps every
-- line in its order's currency. Status had a default and nullable timestamps for every state; here
-- each state requires the timestamps (and tracking number, cancellation) it implies. checkout_id was
-- nullable: every order comes from exactly one checkout, so it is NOT NULL UNIQUE (CreateOrder's
-- idempotency key). order_items was keyed by a surrogate and deleted with its order; here a line is
-- (order_id, sku) and orders are never deleted (they are financial records). Quantities had no
-- CHECK; here 1..99. Order changes were published by nobody; here each one writes an OrderEvent to
-- order_events in the same transaction, and a relay publishes it (the transactional outbox).

CREATE TABLE orders.orders (
    order_id                text PRIMARY KEY CHECK (order_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    checkout_id             text NOT NULL UNIQUE CHECK (checkout_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    user_id                 text NOT NULL CHECK (user_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    customer_email          text NOT NULL DEFAULT '' CHECK (char_length(customer_email) <= 254),
    payment_id              text NOT NULL CHECK (payment_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    status                  text NOT NULL CHECK (status IN ('pending', 'confirmed', 'shipped', 'delivered', 'cancelled')),
    currency_code           char(3) NOT NULL CHECK (currency_code ~ '^[A-Z]{3}$'),
    subtotal_minor          bigint NOT NULL CHECK (subtotal_minor >= 0),
    shipping_cost_minor     bigint NOT NULL CHECK (shipping_cost_minor >= 0),
    tax_minor               bigint NOT NULL CHECK (tax_minor >= 0),
    total_minor             bigint NOT NULL,
    -- shop.type.v1.Address as normalised by the shipping service, snapshotted at purchase.
    shipping_address        jsonb NOT NULL CHECK (jsonb_typeof(shipping_address) = 'object'),
    shipping_method         text NOT NULL CHECK (shipping_method IN ('standard', 'express', 'overnight')),
    tracking_number         text CHECK (tracking_number ~ '^[A-Za-z0-9-]{1,64}$'),
    carrier                 text NOT NULL DEFAULT '' CHECK (char_length(carrier) <= 64),
    -- Cancellation: why, and how far giving money and stock back has got.
    cancel_reason           text CHECK (cancel_reason IN
                                ('customer_request', 'payment_failed', 'out_of_stock', 'fraud_suspected', 'operator', 'other')),
    cancel_note             text NOT NULL DEFAULT '' CHECK (char_length(cancel_note) <= 500),
    cancel_idempotency_key  text CHECK (cancel_idempotency_key ~ '^[A-Za-z0-9._:-]{1,128}$'),
    refund_status           text CHECK (refund_status IN ('pending', 'succeeded', 'not_required', 'failed')),
    refund_id               text CHECK (refund_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    refunded_minor          bigint NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0),
    restock_status          text CHECK (restock_status IN ('pending', 'succeeded', 'not_required', 'failed')),
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    confirmed_at            timestamptz,
    shipped_at              timestamptz,
    delivered_at            timestamptz,
    cancelled_at            timestamptz,
    -- Events written so far; the next OrderEvent gets sequence event_count + 1.
    event_count             bigint NOT NULL DEFAULT 0 CHECK (event_count >= 0),
    CONSTRAINT total_adds_up CHECK (total_minor = subtotal_minor + shipping_cost_minor + tax_minor),
    CONSTRAINT refund_within_total CHECK (refunded_minor <= total_minor),
    CONSTRAINT confirmed_has_time
        CHECK (status NOT IN ('confirmed', 'shipped', 'delivered') OR confirmed_at IS NOT NULL),
    CONSTRAINT shipped_has_tracking
        CHECK (status NOT IN ('shipped', 'delivered') OR (shipped_at IS NOT NULL AND tracking_number IS NOT NULL)),
    CONSTRAINT delivered_has_time CHECK ((status = 'delivered') = (delivered_at IS NOT NULL)),
    CONSTRAINT delivered_after_shipped CHECK (delivered_at IS NULL OR delivered_at >= shipped_at),
    CONSTRAINT cancelled_has_cancellation CHECK (
        (status = 'cancelled') = (cancelled_at IS NOT NULL AND cancel_reason IS NOT NULL
                                  AND refund_status IS NOT NULL AND restock_status IS NOT NULL)
    ),
    CONSTRAINT cancelled_never_shipped CHECK (status <> 'cancelled' OR shipped_at IS NULL),
    CONSTRAINT lines_share_currency UNIQUE (order_id, currency_code)
);

CREATE INDEX orders_by_user ON orders.orders (user_id, created_at DESC, order_id DESC);
CREATE INDEX orders_by_payment ON orders.orders (payment_id);
CREATE UNIQUE INDEX orders_one_per_cancel_key ON orders.orders (cancel_idempotency_key)
    WHERE cancel_idempotency_key IS NOT NULL;
-- The cancellation worker's queue: refunds and restocks not finished within CancelOrder.
CREATE INDEX orders_compensation_due ON orders.orders (cancelled_at)
    WHERE refund_status = 'pending' OR restock_status = 'pending';

CREATE TABLE orders.order_items (
    order_id           text NOT NULL,
    sku                text NOT NULL CHECK (sku ~ '^[A-Za-z0-9._-]{1,64}$'),
    -- Checkout order of the lines, 0-based.
    position           smallint NOT NULL CHECK (position BETWEEN 0 AND 99),
    product_name       text NOT NULL CHECK (char_length(product_name) BETWEEN 1 AND 200),
    quantity           integer NOT NULL CHECK (quantity BETWEEN 1 AND 99),
    currency_code      char(3) NOT NULL CHECK (currency_code ~ '^[A-Z]{3}$'),
    unit_price_minor   bigint NOT NULL CHECK (unit_price_minor >= 0),
    line_total_minor   bigint NOT NULL,
    PRIMARY KEY (order_id, sku),
    CONSTRAINT one_line_per_position UNIQUE (order_id, position),
    CONSTRAINT line_total_adds_up CHECK (line_total_minor = unit_price_minor * quantity),
    CONSTRAINT in_order_currency FOREIGN KEY (order_id, currency_code)
        REFERENCES orders.orders (order_id, currency_code)
);

CREATE INDEX order_items_by_sku ON orders.order_items (sku);

-- The transactional outbox: one row per OrderEvent, written in the transaction of the change it
-- describes; the relay publishes unpublished rows to the stream and stamps published_at.
CREATE TABLE orders.order_events (
    -- Publication order for the relay.
    position          bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    -- OrderEvent.event_id: stable across redeliveries; consumers deduplicate on it.
    event_id          text PRIMARY KEY CHECK (event_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    order_id          text NOT NULL REFERENCES orders.orders (order_id),
    -- OrderEvent.sequence: 1 for OrderCreated, +1 per event of the order.
    sequence          bigint NOT NULL CHECK (sequence >= 1),
    -- The stream entry's "type" field.
    event_type        text NOT NULL CHECK (event_type IN
                          ('OrderCreated', 'OrderConfirmed', 'OrderCancelled', 'OrderShipped', 'OrderDelivered')),
    -- The binary-encoded shop.order.v1.OrderEvent, trace context included.
    payload           bytea NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    published_at      timestamptz,
    publish_attempts  integer NOT NULL DEFAULT 0 CHECK (publish_attempts >= 0),
    CONSTRAINT one_event_per_sequence UNIQUE (order_id, sequence),
    CONSTRAINT created_comes_first CHECK ((sequence = 1) = (event_type = 'OrderCreated'))
);

CREATE INDEX order_events_unpublished ON orders.order_events (position) WHERE published_at IS NULL;
