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

ALTER TABLE checkout.checkouts
    DROP CONSTRAINT checkouts_cart_id_check,
    DROP CONSTRAINT checkouts_checkout_id_check,
    DROP CONSTRAINT checkouts_last_failure_code_check,
    DROP CONSTRAINT checkouts_last_failure_payment_check,
    DROP CONSTRAINT checkouts_last_failure_reason_check,
    DROP CONSTRAINT checkouts_order_id_check,
    DROP CONSTRAINT checkouts_payment_id_check,
    DROP CONSTRAINT checkouts_user_id_check,
    ADD CONSTRAINT checkouts_cart_id_check
        CHECK (cart_id ~ '^[A-Za-z0-9._-]+$' AND char_length(cart_id) <= 64),
    ADD CONSTRAINT checkouts_checkout_id_check
        CHECK (checkout_id ~ '^[A-Za-z0-9._-]+$' AND char_length(checkout_id) <= 64),
    ADD CONSTRAINT checkouts_last_failure_code_check
        CHECK (last_failure_code ~ '^[A-Z_]*$' AND char_length(last_failure_code) <= 32),
    ADD CONSTRAINT checkouts_last_failure_payment_check
        CHECK (last_failure_payment ~ '^[A-Za-z0-9._-]*$' AND char_length(last_failure_payment) <= 64),
    ADD CONSTRAINT checkouts_last_failure_reason_check
        CHECK (last_failure_reason ~ '^[A-Z][A-Z0-9_]*$' AND char_length(last_failure_reason) <= 64),
    ADD CONSTRAINT checkouts_order_id_check
        CHECK (order_id ~ '^[A-Za-z0-9._-]+$' AND char_length(order_id) <= 64),
    ADD CONSTRAINT checkouts_payment_id_check
        CHECK (payment_id ~ '^[A-Za-z0-9._-]+$' AND char_length(payment_id) <= 64),
    ADD CONSTRAINT checkouts_user_id_check
        CHECK (user_id ~ '^[A-Za-z0-9._-]+$' AND char_length(user_id) <= 64);

ALTER TABLE checkout.checkout_lines
    DROP CONSTRAINT checkout_lines_sku_check,
    ADD CONSTRAINT checkout_lines_sku_check
        CHECK (sku ~ '^[A-Za-z0-9._-]+$' AND char_length(sku) <= 64);

ALTER TABLE checkout.saga_steps
    DROP CONSTRAINT saga_steps_last_error_code_check,
    DROP CONSTRAINT saga_steps_payment_id_check,
    DROP CONSTRAINT saga_steps_step_key_check,
    ADD CONSTRAINT saga_steps_last_error_code_check
        CHECK (last_error_code ~ '^[A-Z_]*$' AND char_length(last_error_code) <= 32),
    ADD CONSTRAINT saga_steps_payment_id_check
        CHECK (payment_id ~ '^[A-Za-z0-9._-]*$' AND char_length(payment_id) <= 64),
    ADD CONSTRAINT saga_steps_step_key_check
        CHECK (step_key ~ '^[A-Za-z0-9._:-]+$' AND char_length(step_key) <= 128);

ALTER TABLE checkout.idempotency_keys
    DROP CONSTRAINT idempotency_keys_checkout_id_check,
    DROP CONSTRAINT idempotency_keys_idempotency_key_check,
    DROP CONSTRAINT idempotency_keys_user_id_check,
    ADD CONSTRAINT idempotency_keys_checkout_id_check
        CHECK (checkout_id ~ '^[A-Za-z0-9._-]+$' AND char_length(checkout_id) <= 64),
    ADD CONSTRAINT idempotency_keys_idempotency_key_check
        CHECK (idempotency_key ~ '^[A-Za-z0-9._:-]+$' AND char_length(idempotency_key) <= 128),
    ADD CONSTRAINT idempotency_keys_user_id_check
        CHECK (user_id ~ '^[A-Za-z0-9._-]+$' AND char_length(user_id) <= 64);

ALTER TABLE checkout.checkout_events
    DROP CONSTRAINT checkout_events_event_id_check,
    ADD CONSTRAINT checkout_events_event_id_check
        CHECK (event_id ~ '^[A-Za-z0-9._:-]+$' AND char_length(event_id) <= 128);
