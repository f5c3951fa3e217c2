-- Every statement the cart service runs, each run by one method of repository.py. PostgreSQL holds
-- the carts that left ACTIVE (converted, merged, abandoned); active carts are in Redis (store.py).

-- name: record_cart
-- Records a cart that left ACTIVE; a cart already recorded is left as it is (no row returned), so two
-- replicas or a retry never write it twice.
INSERT INTO cart.carts (cart_id, user_id, session_id, status, currency_code, subtotal_minor, checkout_id,
                        order_id, merged_into_cart_id, created_at, updated_at, ended_at, converted_at)
VALUES (%(cart_id)s, %(user_id)s, %(session_id)s, %(status)s, %(currency_code)s, %(subtotal_minor)s,
        %(checkout_id)s, %(order_id)s, %(merged_into_cart_id)s, %(created_at)s, %(updated_at)s, now(),
        CASE WHEN %(status)s = 'converted' THEN now() END)
ON CONFLICT (cart_id) DO NOTHING
RETURNING cart_id

-- name: record_lines
-- The lines of a cart just recorded, in the order they were first added.
INSERT INTO cart.cart_items (cart_id, sku, position, product_name, quantity, currency_code, unit_price_minor,
                             added_unit_price_minor, unavailable, added_at, updated_at)
SELECT %(cart_id)s, line.sku, line.position - 1, line.product_name, line.quantity, %(currency_code)s,
       line.unit_price_minor, line.added_unit_price_minor, line.unavailable, line.added_at, line.updated_at
  FROM unnest(%(skus)s::text[], %(product_names)s::text[], %(quantities)s::int[], %(unit_prices)s::bigint[],
              %(added_prices)s::bigint[], %(unavailable)s::boolean[], %(added_at)s::timestamptz[],
              %(updated_at)s::timestamptz[])
       WITH ORDINALITY AS line(sku, product_name, quantity, unit_price_minor, added_unit_price_minor, unavailable,
                               added_at, updated_at, position)

-- name: convert_abandoned
-- Converts a cart that expired (ABANDONED) while its checkout ran.
UPDATE cart.carts
   SET status = 'converted', checkout_id = %(checkout_id)s, order_id = %(order_id)s, converted_at = now(),
       updated_at = now()
 WHERE cart_id = %(cart_id)s AND status = 'abandoned'
RETURNING cart_id

-- name: cart
-- A recorded cart.
SELECT * FROM cart.carts WHERE cart_id = %(cart_id)s

-- name: cart_lines
-- A recorded cart's lines in the order they were first added.
SELECT * FROM cart.cart_items WHERE cart_id = %(cart_id)s ORDER BY position
