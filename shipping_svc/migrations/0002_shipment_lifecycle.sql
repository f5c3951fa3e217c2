-- Shipments get a lifecycle that can be reached: CANCELLED (CancelShipment while BOOKED), and the
-- carrier's scans that move a shipment to IN_TRANSIT and DELIVERED, each recorded once by its event id.

ALTER TABLE shipping.shipments DROP CONSTRAINT shipments_status_check;
ALTER TABLE shipping.shipments
    ADD CONSTRAINT shipments_status_check CHECK (status IN ('booked', 'in_transit', 'delivered', 'cancelled'));

CREATE TABLE shipping.carrier_scans (
    event_id     text PRIMARY KEY CHECK (event_id ~ '^[A-Za-z0-9._:-]{1,128}$'),
    shipment_id  text NOT NULL REFERENCES shipping.shipments (shipment_id),
    kind         text NOT NULL CHECK (kind IN ('in_transit', 'delivered')),
    scanned_at   timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX carrier_scans_by_shipment ON shipping.carrier_scans (shipment_id, scanned_at);
