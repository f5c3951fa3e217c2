-- The gateway's checkout events (CheckoutExpired: "your reservation expired") are notified too. They
-- concern a checkout, not an order: processed events and notifications name an order or a checkout
-- (at least one), and the gateway's event ids ("<checkout_id>:expired") may contain ':'.
ALTER TABLE notification.processed_events DROP CONSTRAINT processed_events_event_id_check;
ALTER TABLE notification.processed_events ADD CONSTRAINT processed_events_event_id_check
    CHECK (event_id ~ '^[A-Za-z0-9._:-]{1,128}$');
ALTER TABLE notification.processed_events ALTER COLUMN order_id DROP NOT NULL;
ALTER TABLE notification.processed_events ADD COLUMN checkout_id text
    CHECK (checkout_id ~ '^[A-Za-z0-9._-]{1,64}$');
ALTER TABLE notification.processed_events ADD CONSTRAINT names_order_or_checkout
    CHECK (order_id IS NOT NULL OR checkout_id IS NOT NULL);
ALTER TABLE notification.processed_events DROP CONSTRAINT processed_events_event_type_check;
ALTER TABLE notification.processed_events ADD CONSTRAINT processed_events_event_type_check CHECK (event_type IN
    ('OrderCreated', 'OrderConfirmed', 'OrderCancelled', 'OrderShipped', 'OrderDelivered',
     'OrderRefunded', 'OrderPaymentVoided', 'OrderRestocked', 'CheckoutExpired'));

ALTER TABLE notification.notifications ALTER COLUMN order_id DROP NOT NULL;
ALTER TABLE notification.notifications ADD COLUMN checkout_id text
    CHECK (checkout_id ~ '^[A-Za-z0-9._-]{1,64}$');
ALTER TABLE notification.notifications ADD CONSTRAINT names_order_or_checkout
    CHECK (order_id IS NOT NULL OR checkout_id IS NOT NULL);
