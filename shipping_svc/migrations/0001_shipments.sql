-- Shipments booked with the carrier: one per order, each with its tracking number and items.
-- Rates are not here: they come from a data file (zones, prices by method and weight, thresholds).
--
-- Fixes over the seed design: the seed had no shipping tables at all, and kept the tracking number
-- as a nullable VARCHAR(100) on orders with nothing making it unique. Here a shipment is its own row:
-- order_id is UNIQUE (CreateShipment's idempotency key), the tracking number is UNIQUE and CHECKed
-- against the carrier format, the method and status are CHECKed lists, weights are non-negative
-- integers in grams, the delivery window is a pair of dates in order, and every id is text with a
-- CHECKed pattern and every timestamp timestamptz NOT NULL.

CREATE TABLE shipping.shipments (
    shipment_id             text PRIMARY KEY CHECK (shipment_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    order_id                text NOT NULL UNIQUE CHECK (order_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    tracking_number         text NOT NULL UNIQUE CHECK (tracking_number ~ '^[A-Z0-9-]{8,40}$'),
    carrier                 text NOT NULL CHECK (char_length(carrier) BETWEEN 1 AND 64),
    method                  text NOT NULL CHECK (method IN ('standard', 'express', 'overnight')),
    -- shop.type.v1.Address as normalised by ValidateAddress.
    address                 jsonb NOT NULL CHECK (jsonb_typeof(address) = 'object'),
    total_weight_grams      bigint NOT NULL CHECK (total_weight_grams >= 0),
    status                  text NOT NULL DEFAULT 'booked' CHECK (status IN ('booked', 'in_transit', 'delivered')),
    min_business_days       smallint NOT NULL CHECK (min_business_days BETWEEN 0 AND 60),
    max_business_days       smallint NOT NULL CHECK (max_business_days BETWEEN 0 AND 60),
    earliest_delivery_date  date NOT NULL,
    latest_delivery_date    date NOT NULL,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT window_in_order CHECK (
        min_business_days <= max_business_days AND earliest_delivery_date <= latest_delivery_date
    )
);

CREATE INDEX shipments_by_status ON shipping.shipments (status, created_at) WHERE status <> 'delivered';

CREATE TABLE shipping.shipment_items (
    shipment_id  text NOT NULL REFERENCES shipping.shipments (shipment_id),
    sku          text NOT NULL CHECK (sku ~ '^[A-Za-z0-9._-]{1,64}$'),
    quantity     integer NOT NULL CHECK (quantity BETWEEN 1 AND 10000),
    PRIMARY KEY (shipment_id, sku)
);
