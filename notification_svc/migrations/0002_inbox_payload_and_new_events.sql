-- Issue 9: the inbox accepts the order's compensation events (OrderRefunded, OrderPaymentVoided,
-- OrderRestocked) and records where an event came from on either bus (a Redis entry id or a Kafka
-- "<partition>-<offset>", both "<digits>-<digits>"); the event's bytes are kept with it, so a
-- notification that is dead-lettered sends the original event to the dead-letter topic.
ALTER TABLE notification.processed_events DROP CONSTRAINT processed_events_event_type_check;
ALTER TABLE notification.processed_events ADD CONSTRAINT processed_events_event_type_check CHECK (event_type IN
    ('OrderCreated', 'OrderConfirmed', 'OrderCancelled', 'OrderShipped', 'OrderDelivered',
     'OrderRefunded', 'OrderPaymentVoided', 'OrderRestocked'));
ALTER TABLE notification.processed_events ADD COLUMN payload bytea NOT NULL DEFAULT '';
-- Dead-lettered notifications say why (the last error is in last_error) and when.
ALTER TABLE notification.notifications ADD COLUMN dead_lettered_at timestamptz;
ALTER TABLE notification.notifications ADD CONSTRAINT dead_lettered_has_time
    CHECK ((status = 'dead_lettered') = (dead_lettered_at IS NOT NULL));
-- The retry worker also picks up PENDING notifications whose first attempt was never made (the
-- consumer died between recording and sending).
CREATE INDEX notifications_pending ON notification.notifications (updated_at) WHERE status = 'pending';
