-- The saga as issue 10 built it: an extend-reservation step, attempts and payment ids on the step
-- log, a step's recorded result (so a recovered saga replays finished steps instead of calling them
-- again), the PlaceOrder attempt's payment token (the recovery worker re-sends the same
-- authorization with the same key), the cart's etag frozen at the quote, tax in parts per million
-- (8.875% is not a whole number of basis points), the quote's discount, the card that paid, the
-- shipping options offered, and an outbox of checkout events (reservation expired).

ALTER TABLE checkout.checkouts DROP CONSTRAINT checkouts_current_step_check;
ALTER TABLE checkout.checkouts DROP CONSTRAINT checkouts_last_failure_step_check;
ALTER TABLE checkout.checkouts DROP CONSTRAINT total_adds_up;
ALTER TABLE checkout.checkouts
    ADD CONSTRAINT checkouts_current_step_check CHECK (current_step IN ('reserve_inventory', 'extend_reservation',
        'authorize_payment', 'create_order', 'confirm_reservation', 'capture_payment', 'confirm_order', 'convert_cart')),
    ADD CONSTRAINT checkouts_last_failure_step_check CHECK (last_failure_step IN ('reserve_inventory',
        'extend_reservation', 'authorize_payment', 'create_order', 'confirm_reservation', 'capture_payment',
        'confirm_order', 'convert_cart')),
    ADD COLUMN cart_etag             text NOT NULL DEFAULT '' CHECK (char_length(cart_etag) <= 128),
    ADD COLUMN payment_token         text CHECK (char_length(payment_token) BETWEEN 1 AND 256),
    ADD COLUMN tax_rate_ppm          integer NOT NULL DEFAULT 0 CHECK (tax_rate_ppm BETWEEN 0 AND 1000000),
    ADD COLUMN shipping_taxed        boolean NOT NULL DEFAULT false,
    ADD COLUMN discount_minor        bigint NOT NULL DEFAULT 0 CHECK (discount_minor >= 0 AND discount_minor <= subtotal_minor),
    ADD COLUMN card_brand            text NOT NULL DEFAULT '' CHECK (char_length(card_brand) <= 32),
    ADD COLUMN card_last4            text NOT NULL DEFAULT '' CHECK (card_last4 ~ '^([0-9]{4})?$'),
    -- GetShippingOptionsResponse as quoted (serialized protobuf).
    ADD COLUMN shipping_options      bytea NOT NULL DEFAULT '\x',
    -- Times the saga of the current attempt was picked up again (recovery claims); bounded.
    ADD COLUMN recoveries            integer NOT NULL DEFAULT 0 CHECK (recoveries >= 0),
    ADD COLUMN last_failure_code     text NOT NULL DEFAULT '' CHECK (last_failure_code ~ '^[A-Z_]{0,32}$'),
    ADD COLUMN last_failure_attempt  integer NOT NULL DEFAULT 0 CHECK (last_failure_attempt >= 0),
    ADD COLUMN last_failure_payment  text NOT NULL DEFAULT '' CHECK (last_failure_payment ~ '^[A-Za-z0-9._-]{0,64}$'),
    ADD CONSTRAINT total_adds_up CHECK (total_minor = subtotal_minor - discount_minor + shipping_minor + tax_minor);

ALTER TABLE checkout.saga_steps DROP CONSTRAINT saga_steps_step_check;
ALTER TABLE checkout.saga_steps
    ADD CONSTRAINT saga_steps_step_check CHECK (step IN ('reserve_inventory', 'extend_reservation', 'authorize_payment',
        'create_order', 'confirm_reservation', 'capture_payment', 'confirm_order', 'convert_cart')),
    ADD COLUMN payment_id       text NOT NULL DEFAULT '' CHECK (payment_id ~ '^[A-Za-z0-9._-]{0,64}$'),
    ADD COLUMN last_error_code  text NOT NULL DEFAULT '' CHECK (last_error_code ~ '^[A-Z_]{0,32}$'),
    -- What the step returned (ids), replayed to the script when a recovered saga passes the step again.
    ADD COLUMN result           jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(result) = 'object');

-- PlaceOrder's key row is written in the transaction that starts the attempt.
ALTER TABLE checkout.idempotency_keys DROP CONSTRAINT idempotency_keys_rpc_check;
ALTER TABLE checkout.idempotency_keys
    ADD CONSTRAINT idempotency_keys_rpc_check CHECK (rpc IN ('StartCheckout', 'PlaceOrder', 'CheckoutCart'));

-- Checkout events for customers (today: the reservation lapsed), written in the transaction that
-- changes the checkout, published by a relay.
CREATE TABLE checkout.checkout_events (
    position      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id      text NOT NULL UNIQUE CHECK (event_id ~ '^[A-Za-z0-9._:-]{1,128}$'),
    checkout_id   text NOT NULL REFERENCES checkout.checkouts (checkout_id),
    event_type    text NOT NULL CHECK (event_type IN ('CheckoutExpired')),
    payload       jsonb NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX checkout_events_unpublished ON checkout.checkout_events (position) WHERE published_at IS NULL;
