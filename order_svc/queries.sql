-- name: insert_order
-- Records a new PENDING order (its OrderCreated is event 1); no row when the checkout already has one (the caller then replays).
INSERT INTO orders.orders (order_id, checkout_id, user_id, customer_email, payment_id, status, currency_code,
                           subtotal_minor, discount_minor, shipping_cost_minor, tax_minor, total_minor,
                           shipping_address, shipping_method, created_at, updated_at, event_count)
VALUES (%(order_id)s, %(checkout_id)s, %(user_id)s, %(customer_email)s, %(payment_id)s, 'pending', %(currency_code)s,
        %(subtotal_minor)s, %(discount_minor)s, %(shipping_cost_minor)s, %(tax_minor)s, %(total_minor)s,
        %(shipping_address)s, %(shipping_method)s, now(), now(), 1)
ON CONFLICT (checkout_id) DO NOTHING
RETURNING order_id

-- name: insert_lines
-- Writes the lines of a new order, in checkout order.
INSERT INTO orders.order_items (order_id, sku, position, product_name, quantity, currency_code,
                                unit_price_minor, line_total_minor)
SELECT %(order_id)s, l.sku, l.position, l.product_name, l.quantity, %(currency_code)s, l.unit_price_minor,
       l.line_total_minor
FROM unnest(%(skus)s::text[], %(positions)s::smallint[], %(names)s::text[], %(quantities)s::integer[],
            %(unit_prices)s::bigint[], %(line_totals)s::bigint[])
     AS l(sku, position, product_name, quantity, unit_price_minor, line_total_minor)

-- name: order_by_id
-- One order; with lock, its row is locked for the change that follows.
SELECT * FROM orders.orders WHERE order_id = %(order_id)s

-- name: lock_order
-- Locks one order row for a state change (events of one order are written one transaction at a time), and
-- reads its lines with it (as arrays, in checkout order: one round trip; the lines never change).
SELECT o.*,
       ARRAY(SELECT sku FROM orders.order_items AS i WHERE i.order_id = o.order_id ORDER BY position) AS line_skus,
       ARRAY(SELECT product_name FROM orders.order_items AS i WHERE i.order_id = o.order_id ORDER BY position)
           AS line_names,
       ARRAY(SELECT quantity FROM orders.order_items AS i WHERE i.order_id = o.order_id ORDER BY position)
           AS line_quantities,
       ARRAY(SELECT unit_price_minor FROM orders.order_items AS i WHERE i.order_id = o.order_id ORDER BY position)
           AS line_unit_prices,
       ARRAY(SELECT line_total_minor FROM orders.order_items AS i WHERE i.order_id = o.order_id ORDER BY position)
           AS line_totals
FROM orders.orders AS o
WHERE o.order_id = %(order_id)s
FOR NO KEY UPDATE OF o

-- name: order_by_checkout
-- The order of a checkout (CreateOrder's idempotency key).
SELECT * FROM orders.orders WHERE checkout_id = %(checkout_id)s

-- name: order_by_cancel_key
-- The order a cancellation key was used for.
SELECT * FROM orders.orders WHERE cancel_idempotency_key = %(key)s

-- name: lines_of
-- The lines of some orders, in checkout order.
SELECT * FROM orders.order_items WHERE order_id = ANY(%(order_ids)s) ORDER BY order_id, position

-- name: list_orders
-- A user's orders, newest first, after a (created_at, order_id) position, optionally only some statuses.
SELECT * FROM orders.orders
WHERE user_id = %(user_id)s
  AND (cardinality(%(statuses)s::text[]) = 0 OR status = ANY(%(statuses)s::text[]))
  AND (%(after_time)s::timestamptz IS NULL OR (created_at, order_id) < (%(after_time)s::timestamptz, %(after_id)s))
ORDER BY created_at DESC, order_id DESC
LIMIT %(limit)s

-- name: confirm
-- PENDING → CONFIRMED.
UPDATE orders.orders SET status = 'confirmed', confirmed_at = now(), updated_at = now(),
                         event_count = event_count + 1
WHERE order_id = %(order_id)s AND status = 'pending'
RETURNING *

-- name: ship
-- CONFIRMED → SHIPPED with its shipment.
UPDATE orders.orders SET status = 'shipped', shipment_id = %(shipment_id)s, shipped_at = %(shipped_at)s,
                         updated_at = now(), event_count = event_count + 1
WHERE order_id = %(order_id)s AND status = 'confirmed'
RETURNING *

-- name: deliver
-- SHIPPED → DELIVERED.
UPDATE orders.orders SET status = 'delivered', delivered_at = %(delivered_at)s, updated_at = now(),
                         event_count = event_count + 1
WHERE order_id = %(order_id)s AND status = 'shipped'
RETURNING *

-- name: cancel
-- PENDING | CONFIRMED → CANCELLED; refund and restock are left PENDING for the cancel worker, due now.
UPDATE orders.orders SET status = 'cancelled', cancelled_from = status, cancelled_at = now(), updated_at = now(),
                         cancel_reason = %(reason)s, cancel_note = %(note)s,
                         cancel_idempotency_key = %(idempotency_key)s,
                         refund_status = 'pending', restock_status = 'pending',
                         compensation_due_at = now(), event_count = event_count + 1
WHERE order_id = %(order_id)s AND status IN ('pending', 'confirmed')
RETURNING *

-- name: bump_event_count
-- Reserves the next event sequence of an order that changed only its compensation progress.
UPDATE orders.orders SET event_count = event_count + 1, updated_at = now()
WHERE order_id = %(order_id)s
RETURNING *

-- name: insert_event
-- The transactional outbox: one OrderEvent, written in the transaction of the change it describes.
INSERT INTO orders.order_events (event_id, order_id, sequence, event_type, payload, created_at)
VALUES (%(event_id)s, %(order_id)s, %(sequence)s, %(event_type)s, %(payload)s, %(created_at)s)

-- name: publish_batch
-- The relay's batch, claimed and stamped published in one statement (its transaction commits after the
-- bus holds the events; a failed publish rolls the stamps back). Claims up to %(limit)s unpublished rows in
-- publication order, skipping rows another relay holds (FOR UPDATE SKIP LOCKED), and stamps, per order,
-- only the claimed run that starts at the order's lowest unpublished sequence without a gap: a row another
-- relay holds (unpublished in this snapshot, not claimed here) holds back the later events of its order.
-- Returns the stamped events in publication order.
WITH claimed AS (
    SELECT position, order_id, sequence
    FROM orders.order_events
    WHERE published_at IS NULL
    ORDER BY position
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), first_unpublished AS (
    SELECT order_id, min(sequence) AS sequence
    FROM orders.order_events
    WHERE published_at IS NULL AND order_id IN (SELECT order_id FROM claimed)
    GROUP BY order_id
), ready AS (
    SELECT run.position
    FROM (SELECT position, order_id, sequence,
                 row_number() OVER (PARTITION BY order_id ORDER BY sequence) AS place
          FROM claimed) AS run
    JOIN first_unpublished AS first USING (order_id)
    WHERE run.sequence = first.sequence + run.place - 1
), stamped AS (
    UPDATE orders.order_events AS e SET published_at = now(), publish_attempts = e.publish_attempts + 1
    FROM ready
    WHERE e.position = ready.position
    RETURNING e.position, e.order_id, e.event_type, e.payload
)
SELECT order_id, event_type, payload FROM stamped ORDER BY position

-- name: prune_published
-- Deletes a batch of events published longer ago than the retention.
DELETE FROM orders.order_events
WHERE event_id IN (SELECT event_id FROM orders.order_events
                   WHERE published_at IS NOT NULL AND published_at < now() - make_interval(secs => %(retention_seconds)s)
                   LIMIT %(limit)s)

-- name: claim_compensations
-- The cancel worker's batch: cancellations with a refund or restock due, skipping rows another worker
-- holds; the claim pushes compensation_due_at out by the lease, so a worker killed mid-call leaves the
-- row to be claimed again when the lease expires.
UPDATE orders.orders SET compensation_due_at = now() + make_interval(secs => %(lease_seconds)s)
WHERE order_id IN (SELECT order_id FROM orders.orders
                   WHERE (refund_status = 'pending' OR restock_status = 'pending')
                     AND compensation_due_at <= now()
                     AND (cardinality(%(order_ids)s::text[]) = 0 OR order_id = ANY(%(order_ids)s::text[]))
                   ORDER BY compensation_due_at
                   LIMIT %(limit)s
                   FOR UPDATE SKIP LOCKED)
RETURNING *

-- name: record_refund
-- The payment side of a cancellation is settled (or given up).
UPDATE orders.orders SET refund_status = %(status)s, refund_id = %(refund_id)s, refunded_minor = %(refunded_minor)s,
                         updated_at = now()
WHERE order_id = %(order_id)s AND refund_status = 'pending'
RETURNING *

-- name: record_restock
-- The stock side of a cancellation is settled (or given up).
UPDATE orders.orders SET restock_status = %(status)s, updated_at = now()
WHERE order_id = %(order_id)s AND restock_status = 'pending'
RETURNING *

-- name: schedule_compensation
-- A compensation attempt failed: try again after a delay.
UPDATE orders.orders SET compensation_attempts = compensation_attempts + 1,
                         compensation_due_at = now() + make_interval(secs => %(delay_seconds)s),
                         compensation_last_error = left(%(error)s, 1000)
WHERE order_id = %(order_id)s

-- name: compensation_attempts
-- How many compensation attempts of a cancellation have failed.
SELECT compensation_attempts FROM orders.orders WHERE order_id = %(order_id)s

-- name: cancelled_event
-- The order's OrderCancelled event while the outbox still holds it (its trace context: the cancel worker links to it).
SELECT payload FROM orders.order_events WHERE order_id = %(order_id)s AND event_type = 'OrderCancelled'
ORDER BY sequence DESC
LIMIT 1
