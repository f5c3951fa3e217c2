-- Inventory: products, reservations and the stock ledger.
-- Fixes over the seed design: money is integer minor units (never DECIMAL/float in transit),
-- quantities and statuses are CHECKed, reservations are one per checkout with lines, and every
-- change to stock on hand is a row in stock_movements (the audit trail).

CREATE TABLE inventory.products (
    sku            text PRIMARY KEY CHECK (sku ~ '^[A-Za-z0-9._-]{1,64}$'),
    name           text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    price_minor    bigint NOT NULL CHECK (price_minor BETWEEN 0 AND 100000000000),
    currency_code  char(3) NOT NULL CHECK (currency_code ~ '^[A-Z]{3}$'),
    weight_grams   integer NOT NULL CHECK (weight_grams BETWEEN 0 AND 1000000),
    stock_on_hand  integer NOT NULL DEFAULT 0 CHECK (stock_on_hand <= 1000000000),
    reserved       integer NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT reserved_within_stock CHECK (reserved >= 0 AND stock_on_hand >= reserved)
);

CREATE INDEX products_in_stock ON inventory.products (sku) WHERE stock_on_hand > reserved;

CREATE TABLE inventory.reservations (
    checkout_id     text PRIMARY KEY CHECK (checkout_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    status          text NOT NULL CHECK (status IN ('active', 'confirmed', 'released', 'expired')),
    expires_at      timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    confirmed_at    timestamptz,
    released_at     timestamptz,
    order_id        text,
    release_reason  text NOT NULL DEFAULT '',
    CONSTRAINT confirmed_has_order CHECK ((status = 'confirmed') = (order_id IS NOT NULL AND confirmed_at IS NOT NULL)),
    CONSTRAINT released_has_time CHECK ((status IN ('released', 'expired')) = (released_at IS NOT NULL))
);

CREATE INDEX reservations_expiring ON inventory.reservations (expires_at) WHERE status = 'active';
CREATE UNIQUE INDEX reservations_by_order ON inventory.reservations (order_id) WHERE order_id IS NOT NULL;

CREATE TABLE inventory.reservation_lines (
    checkout_id  text NOT NULL REFERENCES inventory.reservations (checkout_id) ON DELETE CASCADE,
    sku          text NOT NULL REFERENCES inventory.products (sku),
    quantity     integer NOT NULL CHECK (quantity BETWEEN 1 AND 10000),
    PRIMARY KEY (checkout_id, sku)
);

CREATE INDEX reservation_lines_by_sku ON inventory.reservation_lines (sku);

-- Every change to stock_on_hand: manual adjustments, sales (confirmed reservations) and returns.
-- request_key is what made the change: the AdjustStock idempotency key, the checkout_id of a sale,
-- the order_id of a return.
CREATE TABLE inventory.stock_movements (
    movement_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku          text NOT NULL REFERENCES inventory.products (sku),
    delta        integer NOT NULL CHECK (delta <> 0),
    kind         text NOT NULL CHECK (kind IN ('adjustment', 'sale', 'return')),
    reason       text NOT NULL,
    note         text NOT NULL DEFAULT '',
    request_key  text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX stock_movements_by_sku ON inventory.stock_movements (sku, movement_id);
CREATE UNIQUE INDEX stock_movements_one_per_adjustment ON inventory.stock_movements (request_key)
    WHERE kind = 'adjustment';
CREATE UNIQUE INDEX stock_movements_one_per_sale_line ON inventory.stock_movements (request_key, sku)
    WHERE kind = 'sale';
CREATE UNIQUE INDEX stock_movements_one_per_return_line ON inventory.stock_movements (request_key, sku)
    WHERE kind = 'return';

-- Raised by the reserve statement (queries.sql: reserve_all_or_nothing) to roll itself back when a
-- line does not fit or the checkout already has a reservation; the service then explains why.
CREATE FUNCTION inventory.refuse_reservation(checkout_id text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'reservation for checkout % not made', checkout_id USING ERRCODE = 'IV001';
END
$$;
