-- The identifier CHECKs of the earlier migrations, said more cheaply (payment_svc's 0005 did the same).
--
-- PostgreSQL evaluates every CHECK of a table on every INSERT and UPDATE of a row, whatever columns the
-- statement changed. A bounded repetition such as '^[A-Za-z0-9._-]{1,64}$' compiles into a regex whose
-- evaluation costs tens of microseconds (measured on a 2-core bench machine, 100k evaluations: {1,128}
-- 28 us each, the same class with '+' and a char_length bound 2 us), and these tables have up to eight such
-- columns, so a row write spent more in its CHECKs than in its indexes. Each is replaced by "one or more
-- (or, for {0,N}, zero or more) of the class, and at most N characters": the set of accepted values is
-- exactly the same, and NULL still passes where it did.
--
-- Re-adding a CHECK scans the table once under the migration's lock; these tables are written by the
-- checkout path and pruned or small, so the scan is short (for a very large table, split it into
-- ADD ... NOT VALID and a later VALIDATE CONSTRAINT).

ALTER TABLE shipping.shipments
    DROP CONSTRAINT shipments_order_id_check,
    DROP CONSTRAINT shipments_shipment_id_check,
    DROP CONSTRAINT shipments_tracking_number_check,
    ADD CONSTRAINT shipments_order_id_check
        CHECK (order_id ~ '^[A-Za-z0-9._-]+$' AND char_length(order_id) <= 64),
    ADD CONSTRAINT shipments_shipment_id_check
        CHECK (shipment_id ~ '^[A-Za-z0-9._-]+$' AND char_length(shipment_id) <= 64),
    ADD CONSTRAINT shipments_tracking_number_check
        CHECK (tracking_number ~ '^[A-Z0-9-]+$' AND char_length(tracking_number) BETWEEN 8 AND 40);

ALTER TABLE shipping.shipment_items
    DROP CONSTRAINT shipment_items_sku_check,
    ADD CONSTRAINT shipment_items_sku_check
        CHECK (sku ~ '^[A-Za-z0-9._-]+$' AND char_length(sku) <= 64);

ALTER TABLE shipping.carrier_scans
    DROP CONSTRAINT carrier_scans_event_id_check,
    ADD CONSTRAINT carrier_scans_event_id_check
        CHECK (event_id ~ '^[A-Za-z0-9._:-]+$' AND char_length(event_id) <= 128);
