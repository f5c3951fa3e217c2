-- Issue 9: the order refers to its shipment, has a discount, a durable cancellation worker queue,
-- and an outbox that carries the compensation events and is pruned.
--
-- Tracking lives in the shipping service and is stored once, there: the order keeps shipment_id (and
-- ship time) instead of tracking_number and carrier.
ALTER TABLE orders.orders DROP CONSTRAINT shipped_has_tracking;
ALTER TABLE orders.orders DROP COLUMN tracking_number;
ALTER TABLE orders.orders DROP COLUMN carrier;
ALTER TABLE orders.orders ADD COLUMN shipment_id text CHECK (shipment_id ~ '^[A-Za-z0-9._-]{1,64}$');
ALTER TABLE orders.orders ADD CONSTRAINT shipped_has_shipment
    CHECK (status NOT IN ('shipped', 'delivered') OR (shipped_at IS NOT NULL AND shipment_id IS NOT NULL));

-- Discounts come later; the amount is part of the arithmetic now so the contract need not change then.
ALTER TABLE orders.orders ADD COLUMN discount_minor bigint NOT NULL DEFAULT 0 CHECK (discount_minor >= 0);
ALTER TABLE orders.orders DROP CONSTRAINT total_adds_up;
ALTER TABLE orders.orders ADD CONSTRAINT total_adds_up
    CHECK (discount_minor <= subtotal_minor
           AND total_minor = subtotal_minor - discount_minor + shipping_cost_minor + tax_minor);

-- The cancellation worker: what the order was when cancelled decides refund-or-void and
-- return-or-release; compensation_due_at is both the retry schedule and the lease of the worker that
-- claimed the row (a claim pushes it forward; a worker killed mid-call leaves it to expire).
ALTER TABLE orders.orders ADD COLUMN cancelled_from text CHECK (cancelled_from IN ('pending', 'confirmed'));
ALTER TABLE orders.orders ADD COLUMN compensation_attempts integer NOT NULL DEFAULT 0
    CHECK (compensation_attempts >= 0);
ALTER TABLE orders.orders ADD COLUMN compensation_due_at timestamptz;
ALTER TABLE orders.orders ADD COLUMN compensation_last_error text NOT NULL DEFAULT ''
    CHECK (char_length(compensation_last_error) <= 1000);
ALTER TABLE orders.orders ADD CONSTRAINT cancelled_from_set CHECK ((status = 'cancelled') = (cancelled_from IS NOT NULL));
DROP INDEX orders.orders_compensation_due;
CREATE INDEX orders_compensation_due ON orders.orders (compensation_due_at)
    WHERE refund_status = 'pending' OR restock_status = 'pending';

-- Compensation events, so "your refund was issued" can be sent.
ALTER TABLE orders.order_events DROP CONSTRAINT order_events_event_type_check;
ALTER TABLE orders.order_events ADD CONSTRAINT order_events_event_type_check CHECK (event_type IN
    ('OrderCreated', 'OrderConfirmed', 'OrderCancelled', 'OrderShipped', 'OrderDelivered',
     'OrderRefunded', 'OrderPaymentVoided', 'OrderRestocked'));
-- Published rows are pruned after the retention (ORDER_OUTBOX_RETENTION_SECONDS).
CREATE INDEX order_events_published ON orders.order_events (published_at) WHERE published_at IS NOT NULL;
