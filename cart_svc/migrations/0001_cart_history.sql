-- Cart history. An ACTIVE cart lives in Redis only; a cart is written here when it leaves ACTIVE:
-- converted by a checkout, merged into a user's cart at sign-in, or abandoned (found expired by the
-- sweeper). An abandoned cart may later still be converted by a checkout that was already running.
--
-- Fixes over the seed design: prices were DECIMAL(10,2) without a currency; here they are bigint
-- minor units with a CHECKed char(3) currency, and a composite key makes every line share its
-- cart's currency. Quantities were only "> 0"; here 1..99. The seed's surrogate item_id allowed two
-- lines for one SKU; here a line is keyed (cart_id, sku) and keeps its position. The status list
-- lacked "merged", and a cart could have both owners or neither; both are CHECKed. A converted cart
-- records its checkout (one cart per checkout) and order. Ids are text with a CHECKed pattern, and
-- every timestamp is timestamptz NOT NULL unless it marks an event that may not have happened.

CREATE TABLE cart.carts (
    cart_id              text PRIMARY KEY CHECK (cart_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    user_id              text CHECK (user_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    session_id           text CHECK (session_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    status               text NOT NULL CHECK (status IN ('converted', 'abandoned', 'merged')),
    -- NULL for a cart that ended empty; otherwise the currency of its first line.
    currency_code        char(3) CHECK (currency_code ~ '^[A-Z]{3}$'),
    subtotal_minor       bigint NOT NULL DEFAULT 0 CHECK (subtotal_minor >= 0),
    checkout_id          text CHECK (checkout_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    order_id             text CHECK (order_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    merged_into_cart_id  text CHECK (merged_into_cart_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    -- When it left ACTIVE (conversion, merge or expiry).
    ended_at             timestamptz NOT NULL DEFAULT now(),
    converted_at         timestamptz,
    recorded_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT one_owner CHECK ((user_id IS NULL) <> (session_id IS NULL)),
    CONSTRAINT converted_names_checkout
        CHECK ((status = 'converted') = (checkout_id IS NOT NULL AND converted_at IS NOT NULL)),
    CONSTRAINT order_only_when_converted CHECK (order_id IS NULL OR status = 'converted'),
    CONSTRAINT merged_names_target CHECK ((status = 'merged') = (merged_into_cart_id IS NOT NULL)),
    CONSTRAINT merged_from_a_session CHECK (status <> 'merged' OR session_id IS NOT NULL),
    CONSTRAINT lines_share_currency UNIQUE (cart_id, currency_code)
);

CREATE INDEX carts_by_user ON cart.carts (user_id, ended_at DESC) WHERE user_id IS NOT NULL;
CREATE INDEX carts_by_session ON cart.carts (session_id, ended_at DESC) WHERE session_id IS NOT NULL;
CREATE UNIQUE INDEX carts_one_per_checkout ON cart.carts (checkout_id) WHERE checkout_id IS NOT NULL;

CREATE TABLE cart.cart_items (
    cart_id                 text NOT NULL,
    sku                     text NOT NULL CHECK (sku ~ '^[A-Za-z0-9._-]{1,64}$'),
    -- Order in which lines were first added, 0-based.
    position                smallint NOT NULL CHECK (position BETWEEN 0 AND 99),
    product_name            text NOT NULL CHECK (char_length(product_name) <= 200),
    quantity                integer NOT NULL CHECK (quantity BETWEEN 1 AND 99),
    currency_code           char(3) NOT NULL CHECK (currency_code ~ '^[A-Z]{3}$'),
    -- Last known catalogue price, and the price when the line was first added.
    unit_price_minor        bigint NOT NULL CHECK (unit_price_minor BETWEEN 0 AND 100000000000),
    added_unit_price_minor  bigint NOT NULL CHECK (added_unit_price_minor BETWEEN 0 AND 100000000000),
    -- The SKU had left the catalogue when the cart was recorded.
    unavailable             boolean NOT NULL DEFAULT false,
    added_at                timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cart_id, sku),
    CONSTRAINT one_line_per_position UNIQUE (cart_id, position),
    CONSTRAINT in_cart_currency FOREIGN KEY (cart_id, currency_code)
        REFERENCES cart.carts (cart_id, currency_code) ON DELETE CASCADE
);

CREATE INDEX cart_items_by_sku ON cart.cart_items (sku);
