-- Checkouts (a cart's priced, reserved snapshot), the durable log of their saga steps, and the
-- idempotency keys of the public API.
--
-- Fixes over the seed design: the seed's "Checkout Service" kept no state at all, so a saga that
-- died between reserving, charging and creating the order left nothing to resume or compensate
-- from, and a retried request could charge twice. Here the checkout and its quote are rows (money
-- as bigint minor units in one CHECKed char(3) currency, total CHECKed to be subtotal + shipping +
-- tax), every saga step is a row with its step key (reused on retry) and the compensation
-- registered before it ran, a recovery worker takes sagas by lease, a cart has at most one open
-- checkout, and each idempotency key is stored per user and RPC with the request fingerprint, the
-- recorded response and a 24-hour expiry. Statuses are CHECKed lists with the columns they imply,
-- ids are text with a CHECKed pattern, and timestamps are timestamptz NOT NULL unless they mark an
-- event that may not have happened yet.

CREATE TABLE checkout.checkouts (
    checkout_id              text PRIMARY KEY CHECK (checkout_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    user_id                  text NOT NULL CHECK (user_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    cart_id                  text NOT NULL CHECK (cart_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    status                   text NOT NULL CHECK (status IN ('quoted', 'placing', 'completed', 'failed', 'cancelled', 'expired')),
    -- shop.type.v1.Address as normalised by the shipping service.
    shipping_address         jsonb NOT NULL CHECK (jsonb_typeof(shipping_address) = 'object'),
    shipping_method          text NOT NULL CHECK (shipping_method IN ('standard', 'express', 'overnight')),
    contact_email            text NOT NULL DEFAULT '' CHECK (char_length(contact_email) <= 254),
    -- The quote, frozen at StartCheckout.
    currency_code            char(3) NOT NULL CHECK (currency_code ~ '^[A-Z]{3}$'),
    subtotal_minor           bigint NOT NULL CHECK (subtotal_minor >= 0),
    shipping_minor           bigint NOT NULL CHECK (shipping_minor >= 0),
    tax_minor                bigint NOT NULL CHECK (tax_minor >= 0),
    total_minor              bigint NOT NULL,
    tax_rate_basis_points    integer NOT NULL CHECK (tax_rate_basis_points BETWEEN 0 AND 10000),
    free_shipping_applied    boolean NOT NULL DEFAULT false,
    min_business_days        smallint NOT NULL CHECK (min_business_days BETWEEN 0 AND 60),
    max_business_days        smallint NOT NULL CHECK (max_business_days BETWEEN 0 AND 60),
    earliest_delivery_date   date NOT NULL,
    latest_delivery_date     date NOT NULL,
    reservation_expires_at   timestamptz NOT NULL,
    -- PlaceOrder attempts so far; part of each step key, so a new attempt (another card) authorizes anew.
    place_attempt            integer NOT NULL DEFAULT 0 CHECK (place_attempt >= 0),
    current_step             text CHECK (current_step IN ('reserve_inventory', 'authorize_payment', 'create_order',
                                 'confirm_reservation', 'capture_payment', 'confirm_order', 'convert_cart')),
    order_id                 text CHECK (order_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    payment_id               text CHECK (payment_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    last_failure_reason      text CHECK (last_failure_reason ~ '^[A-Z][A-Z0-9_]{0,63}$'),
    last_failure_message     text NOT NULL DEFAULT '' CHECK (char_length(last_failure_message) <= 500),
    last_failure_step        text CHECK (last_failure_step IN ('reserve_inventory', 'authorize_payment', 'create_order',
                                 'confirm_reservation', 'capture_payment', 'confirm_order', 'convert_cart')),
    last_failure_at          timestamptz,
    -- The recovery worker's lease on a PLACING saga whose process may have died.
    lease_owner              text CHECK (char_length(lease_owner) BETWEEN 1 AND 128),
    lease_expires_at         timestamptz,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    ended_at                 timestamptz,
    CONSTRAINT total_adds_up CHECK (total_minor = subtotal_minor + shipping_minor + tax_minor),
    CONSTRAINT window_in_order CHECK (
        min_business_days <= max_business_days AND earliest_delivery_date <= latest_delivery_date
    ),
    CONSTRAINT completed_has_order CHECK (status <> 'completed' OR (order_id IS NOT NULL AND payment_id IS NOT NULL)),
    CONSTRAINT ended_has_time CHECK ((status IN ('completed', 'failed', 'cancelled', 'expired')) = (ended_at IS NOT NULL)),
    CONSTRAINT failure_is_whole CHECK (
        (last_failure_reason IS NULL) = (last_failure_step IS NULL AND last_failure_at IS NULL)
    ),
    CONSTRAINT failed_says_why CHECK (status <> 'failed' OR last_failure_reason IS NOT NULL),
    CONSTRAINT lease_is_whole CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL)),
    CONSTRAINT lines_share_currency UNIQUE (checkout_id, currency_code)
);

-- A cart has at most one open checkout: a new quote supersedes a QUOTED one, and a PLACING one blocks it.
CREATE UNIQUE INDEX checkouts_one_open_per_cart ON checkout.checkouts (cart_id) WHERE status IN ('quoted', 'placing');
CREATE INDEX checkouts_by_user ON checkout.checkouts (user_id, created_at DESC);
-- The recovery worker's queue, and the expiry of quotes nobody placed.
CREATE INDEX checkouts_placing ON checkout.checkouts (lease_expires_at NULLS FIRST) WHERE status = 'placing';
CREATE INDEX checkouts_quoted_expiring ON checkout.checkouts (reservation_expires_at) WHERE status = 'quoted';

CREATE TABLE checkout.checkout_lines (
    checkout_id       text NOT NULL,
    sku               text NOT NULL CHECK (sku ~ '^[A-Za-z0-9._-]{1,64}$'),
    -- Cart order of the lines, 0-based.
    position          smallint NOT NULL CHECK (position BETWEEN 0 AND 99),
    product_name      text NOT NULL CHECK (char_length(product_name) BETWEEN 1 AND 200),
    quantity          integer NOT NULL CHECK (quantity BETWEEN 1 AND 99),
    currency_code     char(3) NOT NULL CHECK (currency_code ~ '^[A-Z]{3}$'),
    unit_price_minor  bigint NOT NULL CHECK (unit_price_minor >= 0),
    line_total_minor  bigint NOT NULL,
    PRIMARY KEY (checkout_id, sku),
    CONSTRAINT one_line_per_position UNIQUE (checkout_id, position),
    CONSTRAINT line_total_adds_up CHECK (line_total_minor = unit_price_minor * quantity),
    CONSTRAINT in_checkout_currency FOREIGN KEY (checkout_id, currency_code)
        REFERENCES checkout.checkouts (checkout_id, currency_code)
);

-- The saga's step log: one row per step of each attempt, written (with its compensation) before
-- the step's call is made.
CREATE TABLE checkout.saga_steps (
    checkout_id        text NOT NULL REFERENCES checkout.checkouts (checkout_id),
    -- 0 for StartCheckout's reservation, then the PlaceOrder attempt.
    attempt            integer NOT NULL CHECK (attempt >= 0),
    step               text NOT NULL CHECK (step IN ('reserve_inventory', 'authorize_payment', 'create_order',
                           'confirm_reservation', 'capture_payment', 'confirm_order', 'convert_cart')),
    -- The idempotency key sent downstream; the same on every retry.
    step_key           text NOT NULL UNIQUE CHECK (step_key ~ '^[A-Za-z0-9._:-]{1,128}$'),
    status             text NOT NULL CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'compensating', 'compensated')),
    -- The RPC that undoes the step (a gRPC method path), registered before the step runs; NULL from the pivot on.
    compensation       text CHECK (compensation ~ '^/[A-Za-z0-9_.]+/[A-Za-z0-9_]+$'),
    attempts           integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error_reason  text NOT NULL DEFAULT '' CHECK (char_length(last_error_reason) <= 64),
    started_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    ended_at           timestamptz,
    PRIMARY KEY (checkout_id, attempt, step),
    CONSTRAINT ended_has_time CHECK ((status IN ('succeeded', 'failed', 'compensated')) = (ended_at IS NOT NULL)),
    CONSTRAINT only_undoable_steps_compensate CHECK (status NOT IN ('compensating', 'compensated') OR compensation IS NOT NULL),
    CONSTRAINT no_undo_from_the_pivot_on CHECK (
        step IN ('reserve_inventory', 'authorize_payment') OR compensation IS NULL
    )
);

-- Stripe-style idempotency keys of StartCheckout, PlaceOrder and Checkout, scoped to the user and the RPC.
CREATE TABLE checkout.idempotency_keys (
    user_id          text NOT NULL CHECK (user_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    rpc              text NOT NULL CHECK (rpc IN ('StartCheckout', 'PlaceOrder', 'Checkout')),
    idempotency_key  text NOT NULL CHECK (idempotency_key ~ '^[A-Za-z0-9._:-]{1,128}$'),
    -- SHA-256 of the request without its key; a different fingerprint is IDEMPOTENCY_KEY_REUSED.
    fingerprint      bytea NOT NULL CHECK (octet_length(fingerprint) = 32),
    state            text NOT NULL DEFAULT 'in_progress' CHECK (state IN ('in_progress', 'completed')),
    -- While in progress: until when the first request holds the key (a crashed one lets it go).
    locked_until     timestamptz,
    checkout_id      text CHECK (checkout_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    -- Once completed: the gRPC status code and the serialized response (or google.rpc.Status) to replay.
    response_code    smallint CHECK (response_code BETWEEN 0 AND 16),
    response         bytea,
    created_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz,
    expires_at       timestamptz NOT NULL DEFAULT now() + interval '24 hours',
    PRIMARY KEY (user_id, rpc, idempotency_key),
    CONSTRAINT completed_has_response CHECK (
        (state = 'completed') = (completed_at IS NOT NULL AND response_code IS NOT NULL AND response IS NOT NULL)
    ),
    CONSTRAINT in_progress_is_locked CHECK ((state = 'in_progress') = (locked_until IS NOT NULL)),
    CONSTRAINT expires_after_creation CHECK (expires_at > created_at)
);

CREATE INDEX idempotency_keys_expiring ON checkout.idempotency_keys (expires_at);
