-- Every statement the inventory service runs, each run by one method of repository.py.
-- The stock cap arrives as %(max_stock)s (inventory_svc.domain.model.MAX_STOCK), written once.

-- name: upsert_product
-- Creates a product or updates its catalogue fields; `created` tells which.
INSERT INTO inventory.products AS p (sku, name, price_minor, currency_code, weight_grams)
VALUES (%(sku)s, %(name)s, %(price_minor)s, %(currency_code)s, %(weight_grams)s)
ON CONFLICT (sku) DO UPDATE
   SET name = EXCLUDED.name,
       price_minor = EXCLUDED.price_minor,
       currency_code = EXCLUDED.currency_code,
       weight_grams = EXCLUDED.weight_grams,
       updated_at = CASE
           WHEN (p.name, p.price_minor, p.currency_code, p.weight_grams)
                IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.price_minor, EXCLUDED.currency_code, EXCLUDED.weight_grams)
           THEN now() ELSE p.updated_at END
RETURNING p.*, (p.xmax = 0) AS created

-- name: products_by_sku
-- Products for a list of SKUs (any order).
SELECT * FROM inventory.products WHERE sku = ANY(%(skus)s)

-- name: list_products
-- A page of products after a SKU, optionally only those with units available.
SELECT * FROM inventory.products
 WHERE sku > %(after_sku)s
   AND (NOT %(in_stock_only)s OR stock_on_hand > reserved)
 ORDER BY sku
 LIMIT %(limit)s

-- name: lock_products
-- Locks product rows in SKU order, so that transactions touching several SKUs cannot deadlock.
-- NO KEY UPDATE: stock changes never touch the key, so foreign-key checks of concurrent inserts
-- (KEY SHARE) are not blocked and cannot form a cycle with this lock.
SELECT sku FROM inventory.products WHERE sku = ANY(%(skus)s) ORDER BY sku FOR NO KEY UPDATE

-- name: lock_products_of_reservations
-- Locks, in SKU order, the product rows that these reservations' lines hold units of.
SELECT p.sku FROM inventory.products p
 WHERE p.sku IN (SELECT sku FROM inventory.reservation_lines WHERE checkout_id = ANY(%(checkout_ids)s))
 ORDER BY p.sku
   FOR NO KEY UPDATE

-- name: reserve_all_or_nothing
-- Makes reservations for a batch of new checkouts in one statement, run as its own transaction, so
-- the hot product rows stay locked only while PostgreSQL runs it, never across a client round trip,
-- and concurrent reservations of one hot SKU take its row lock once per batch instead of once each.
-- Each request (checkout_ids[i], ttl_seconds[i], and the lines whose line_requests entry is i) is all
-- or nothing on its own: it is made only if its checkout has no reservation, every SKU is a product
-- on sale, and every line fits, counting in request order the lines of every request before it (a
-- refused request still counts, so a later one may be refused that would fit alone: the service
-- explains each refusal and retries alone a request that nothing explains).
-- Product rows are locked in SKU order first (no deadlocks between multi-line reservations). Each
-- SKU's total is then taken by a conditional UPDATE (`stock_on_hand - reserved >= quantity`,
-- re-checked by PostgreSQL on the row's latest version); should one not hold after all,
-- inventory.refuse_reservation raises SQLSTATE IV001 and the whole batch rolls back. One row back
-- per reservation made (`request` is its 1-based position); none for the requests refused.
WITH request AS (
    SELECT r.request, r.checkout_id, r.ttl_seconds
      FROM unnest(%(checkout_ids)s::text[], %(ttl_seconds)s::float8[])
           WITH ORDINALITY AS r (checkout_id, ttl_seconds, request)
), wanted AS (
    SELECT w.request, w.sku, w.quantity
      FROM unnest(%(line_requests)s::int[], %(skus)s::text[], %(quantities)s::int[]) AS w (request, sku, quantity)
), locked AS MATERIALIZED (
    SELECT p.sku, p.stock_on_hand - p.reserved AS available, p.discontinued_at IS NULL AS on_sale
      FROM inventory.products p
     WHERE p.sku = ANY(%(skus)s::text[])
     ORDER BY p.sku
       FOR NO KEY UPDATE
), refused AS (
    -- requests with a line of an unknown or discontinued SKU, or past what is available
    SELECT d.request FROM (
        SELECT w.request, l.on_sale,
               sum(w.quantity) OVER (PARTITION BY w.sku ORDER BY w.request) <= l.available AS fits
          FROM wanted w LEFT JOIN locked l ON l.sku = w.sku
    ) AS d
     WHERE (d.on_sale AND d.fits) IS NOT TRUE
), reservation AS (
    INSERT INTO inventory.reservations (checkout_id, status, expires_at)
    SELECT r.checkout_id, 'active', now() + make_interval(secs => r.ttl_seconds)
      FROM request r
     WHERE r.request NOT IN (SELECT request FROM refused)
     ORDER BY r.request
    ON CONFLICT (checkout_id) DO NOTHING
    RETURNING checkout_id, expires_at, created_at
), made AS MATERIALIZED (
    SELECT q.request, r.checkout_id, r.expires_at, r.created_at
      FROM reservation r JOIN request q ON q.checkout_id = r.checkout_id
), lines AS (
    INSERT INTO inventory.reservation_lines (checkout_id, sku, quantity)
    SELECT m.checkout_id, w.sku, w.quantity FROM made m JOIN wanted w ON w.request = m.request
), per_sku AS MATERIALIZED (
    SELECT w.sku, sum(w.quantity)::int AS quantity FROM made m JOIN wanted w ON w.request = m.request GROUP BY w.sku
), taken AS (
    UPDATE inventory.products p
       SET reserved = p.reserved + t.quantity, updated_at = now()
      FROM per_sku t
     WHERE p.sku = t.sku AND p.stock_on_hand - p.reserved >= t.quantity AND p.discontinued_at IS NULL
    RETURNING p.sku
)
SELECT m.request, m.expires_at, m.created_at
  FROM made m
 WHERE (SELECT count(*) FROM taken) = (SELECT count(*) FROM per_sku)
    OR inventory.refuse_reservation(m.checkout_id)

-- name: discontinue_product
-- Takes a product out of the catalogue (once: a repeat keeps the first time); no row when unknown.
UPDATE inventory.products
   SET discontinued_at = coalesce(discontinued_at, now()),
       updated_at = CASE WHEN discontinued_at IS NULL THEN now() ELSE updated_at END
 WHERE sku = %(sku)s
RETURNING *, (discontinued_at = now()) AS changed

-- name: give_back_units
-- Returns reserved units of one SKU to availability (release or expiry).
UPDATE inventory.products
   SET reserved = reserved - %(quantity)s, updated_at = now()
 WHERE sku = %(sku)s

-- name: give_back_reserved_lines
-- Returns the reserved units of several ended reservations at once (the sweeper's batch).
UPDATE inventory.products p
   SET reserved = p.reserved - l.quantity, updated_at = now()
  FROM (SELECT sku, sum(quantity)::int AS quantity
          FROM inventory.reservation_lines
         WHERE checkout_id = ANY(%(checkout_ids)s)
         GROUP BY sku) AS l
 WHERE p.sku = l.sku
RETURNING p.sku

-- name: restock_units
-- Puts returned units back on hand unless that would pass the stock cap; no row back means refused.
UPDATE inventory.products
   SET stock_on_hand = stock_on_hand + %(quantity)s, updated_at = now()
 WHERE sku = %(sku)s AND stock_on_hand + %(quantity)s <= %(max_stock)s
RETURNING sku

-- name: sell_units
-- Turns reserved units into a sale: both stock on hand and reserved decrease.
UPDATE inventory.products
   SET stock_on_hand = stock_on_hand - %(quantity)s, reserved = reserved - %(quantity)s, updated_at = now()
 WHERE sku = %(sku)s

-- name: change_stock
-- Adds a signed delta to stock on hand unless that would go below what is reserved or past the cap.
UPDATE inventory.products
   SET stock_on_hand = stock_on_hand + %(delta)s, updated_at = now()
 WHERE sku = %(sku)s
   AND stock_on_hand + %(delta)s >= reserved
   AND stock_on_hand + %(delta)s <= %(max_stock)s
RETURNING *

-- name: record_movement
-- Appends one stock change to the audit trail.
INSERT INTO inventory.stock_movements (sku, delta, kind, reason, note, request_key)
VALUES (%(sku)s, %(delta)s, %(kind)s, %(reason)s, %(note)s, %(request_key)s)
RETURNING movement_id, created_at

-- name: movements_for_request
-- The movements one request made (an adjustment key, a sale's checkout_id, a return's order_id).
SELECT movement_id, sku, delta, kind, reason, note, request_key, created_at FROM inventory.stock_movements
 WHERE kind = %(kind)s AND request_key = %(request_key)s
 ORDER BY sku

-- name: insert_released_marker
-- Records a release that arrived before any reservation, so a late ReserveInventory is refused.
INSERT INTO inventory.reservations (checkout_id, status, expires_at, released_at, release_reason)
VALUES (%(checkout_id)s, 'released', now(), now(), %(reason)s)
ON CONFLICT (checkout_id) DO NOTHING
RETURNING *

-- name: reservation
-- A reservation with whether its expiry has passed (by the database clock).
SELECT r.*, (r.expires_at <= now()) AS past_expiry FROM inventory.reservations r
 WHERE checkout_id = %(checkout_id)s

-- name: lock_reservation
-- The same, locked for the rest of the transaction.
SELECT r.*, (r.expires_at <= now()) AS past_expiry FROM inventory.reservations r
 WHERE checkout_id = %(checkout_id)s
   FOR UPDATE

-- name: lock_reservation_by_order
-- The confirmed reservation an order bought, locked.
SELECT r.*, false AS past_expiry FROM inventory.reservations r
 WHERE order_id = %(order_id)s AND status = 'confirmed'
   FOR UPDATE

-- name: reservation_lines
-- A reservation's lines in SKU order.
SELECT sku, quantity FROM inventory.reservation_lines
 WHERE checkout_id = %(checkout_id)s
 ORDER BY sku

-- name: mark_reservation_confirmed
-- Records that an active reservation was sold to an order.
UPDATE inventory.reservations
   SET status = 'confirmed', order_id = %(order_id)s, confirmed_at = now()
 WHERE checkout_id = %(checkout_id)s
RETURNING *, false AS past_expiry

-- name: mark_reservation_ended
-- Ends an active reservation as 'released' or 'expired'.
UPDATE inventory.reservations
   SET status = %(status)s, released_at = now(), release_reason = %(reason)s
 WHERE checkout_id = %(checkout_id)s AND status = 'active'
RETURNING *, false AS past_expiry

-- name: extend_reservation
-- Moves an active reservation's expiry to now + ttl, never earlier than it is.
UPDATE inventory.reservations
   SET expires_at = greatest(expires_at, now() + make_interval(secs => %(ttl_seconds)s))
 WHERE checkout_id = %(checkout_id)s AND status = 'active'
RETURNING *, false AS past_expiry

-- name: expire_due_reservations
-- Ends up to `batch` active reservations past their expiry that no other transaction holds, as
-- 'expired', and returns their checkout ids; their lines still need give_back_reserved_lines.
WITH due AS (
    SELECT checkout_id FROM inventory.reservations
     WHERE status = 'active' AND expires_at <= now()
     ORDER BY expires_at
     LIMIT %(batch)s
       FOR UPDATE SKIP LOCKED
)
UPDATE inventory.reservations r
   SET status = 'expired', released_at = now(), release_reason = 'expired'
  FROM due
 WHERE r.checkout_id = due.checkout_id
RETURNING r.checkout_id

-- name: invariant_violations
-- Products whose counters disagree with reservations or the audit trail (empty when all is well).
SELECT p.sku, p.stock_on_hand, p.reserved,
       coalesce(r.active_units, 0) AS reserved_by_lines,
       coalesce(m.ledger_units, 0) AS stock_by_ledger
  FROM inventory.products p
  LEFT JOIN (SELECT l.sku, sum(l.quantity) AS active_units
               FROM inventory.reservation_lines l
               JOIN inventory.reservations r USING (checkout_id)
              WHERE r.status = 'active' GROUP BY l.sku) r USING (sku)
  LEFT JOIN (SELECT sku, sum(delta) AS ledger_units FROM inventory.stock_movements GROUP BY sku) m USING (sku)
 WHERE p.reserved <> coalesce(r.active_units, 0)
    OR p.stock_on_hand <> coalesce(m.ledger_units, 0)
    OR p.reserved < 0 OR p.stock_on_hand < p.reserved
