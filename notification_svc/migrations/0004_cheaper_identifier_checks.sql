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

ALTER TABLE notification.processed_events
    DROP CONSTRAINT processed_events_checkout_id_check,
    DROP CONSTRAINT processed_events_event_id_check,
    DROP CONSTRAINT processed_events_order_id_check,
    ADD CONSTRAINT processed_events_checkout_id_check
        CHECK (checkout_id ~ '^[A-Za-z0-9._-]+$' AND char_length(checkout_id) <= 64),
    ADD CONSTRAINT processed_events_event_id_check
        CHECK (event_id ~ '^[A-Za-z0-9._:-]+$' AND char_length(event_id) <= 128),
    ADD CONSTRAINT processed_events_order_id_check
        CHECK (order_id ~ '^[A-Za-z0-9._-]+$' AND char_length(order_id) <= 64);

ALTER TABLE notification.notifications
    DROP CONSTRAINT notifications_checkout_id_check,
    DROP CONSTRAINT notifications_notification_id_check,
    DROP CONSTRAINT notifications_order_id_check,
    DROP CONSTRAINT notifications_template_check,
    DROP CONSTRAINT notifications_user_id_check,
    ADD CONSTRAINT notifications_checkout_id_check
        CHECK (checkout_id ~ '^[A-Za-z0-9._-]+$' AND char_length(checkout_id) <= 64),
    ADD CONSTRAINT notifications_notification_id_check
        CHECK (notification_id ~ '^[A-Za-z0-9._-]+$' AND char_length(notification_id) <= 64),
    ADD CONSTRAINT notifications_order_id_check
        CHECK (order_id ~ '^[A-Za-z0-9._-]+$' AND char_length(order_id) <= 64),
    ADD CONSTRAINT notifications_template_check
        CHECK (template ~ '^[a-z][a-z0-9_]*$' AND char_length(template) <= 64),
    ADD CONSTRAINT notifications_user_id_check
        CHECK (user_id ~ '^[A-Za-z0-9._-]+$' AND char_length(user_id) <= 64);
