-- The inbox's (order_id, sequence) index is read by no statement (the inbox is looked up by event_id, its
-- primary key), yet every recorded event paid an insert into it. Dropped: one index write less per event.
DROP INDEX notification.processed_events_by_order;
