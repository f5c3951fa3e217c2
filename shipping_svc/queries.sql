-- Every statement the shipping service runs, each run by one method of repository.py.

-- name: insert_shipment
-- Books a shipment; nothing (no row) when the order already has one.
INSERT INTO shipping.shipments (shipment_id, order_id, tracking_number, carrier, method, address,
                                total_weight_grams, min_business_days, max_business_days,
                                earliest_delivery_date, latest_delivery_date)
VALUES (%(shipment_id)s, %(order_id)s, %(tracking_number)s, %(carrier)s, %(method)s, %(address)s,
        %(total_weight_grams)s, %(min_business_days)s, %(max_business_days)s, %(earliest)s, %(latest)s)
ON CONFLICT (order_id) DO NOTHING
RETURNING shipment_id

-- name: insert_items
-- The lines of a shipment just booked.
INSERT INTO shipping.shipment_items (shipment_id, sku, quantity)
SELECT %(shipment_id)s, sku, quantity FROM unnest(%(skus)s::text[], %(quantities)s::int[]) AS line(sku, quantity)

-- name: shipment
-- A shipment by id, locked for a status change when asked.
SELECT * FROM shipping.shipments WHERE shipment_id = %(shipment_id)s

-- name: lock_shipment
-- A shipment by id, locked for a status change.
SELECT * FROM shipping.shipments WHERE shipment_id = %(shipment_id)s FOR UPDATE

-- name: shipment_of_order
-- The shipment of an order.
SELECT * FROM shipping.shipments WHERE order_id = %(order_id)s

-- name: items
-- A shipment's lines in SKU order.
SELECT sku, quantity FROM shipping.shipment_items WHERE shipment_id = %(shipment_id)s ORDER BY sku

-- name: set_status
-- Moves a shipment to a status.
UPDATE shipping.shipments SET status = %(status)s, updated_at = now() WHERE shipment_id = %(shipment_id)s

-- name: insert_scan
-- Records a carrier scan; nothing (no row) when its event id is already recorded.
INSERT INTO shipping.carrier_scans (event_id, shipment_id, kind, scanned_at)
VALUES (%(event_id)s, %(shipment_id)s, %(kind)s, %(scanned_at)s)
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id

-- name: scan
-- A recorded carrier scan.
SELECT * FROM shipping.carrier_scans WHERE event_id = %(event_id)s
