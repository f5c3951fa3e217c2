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

ALTER TABLE cart.carts
    DROP CONSTRAINT carts_cart_id_check,
    DROP CONSTRAINT carts_checkout_id_check,
    DROP CONSTRAINT carts_merged_into_cart_id_check,
    DROP CONSTRAINT carts_order_id_check,
    DROP CONSTRAINT carts_session_id_check,
    DROP CONSTRAINT carts_user_id_check,
    ADD CONSTRAINT carts_cart_id_check
        CHECK (cart_id ~ '^[A-Za-z0-9._-]+$' AND char_length(cart_id) <= 64),
    ADD CONSTRAINT carts_checkout_id_check
        CHECK (checkout_id ~ '^[A-Za-z0-9._-]+$' AND char_length(checkout_id) <= 64),
    ADD CONSTRAINT carts_merged_into_cart_id_check
        CHECK (merged_into_cart_id ~ '^[A-Za-z0-9._-]+$' AND char_length(merged_into_cart_id) <= 64),
    ADD CONSTRAINT carts_order_id_check
        CHECK (order_id ~ '^[A-Za-z0-9._-]+$' AND char_length(order_id) <= 64),
    ADD CONSTRAINT carts_session_id_check
        CHECK (session_id ~ '^[A-Za-z0-9._-]+$' AND char_length(session_id) <= 64),
    ADD CONSTRAINT carts_user_id_check
        CHECK (user_id ~ '^[A-Za-z0-9._-]+$' AND char_length(user_id) <= 64);

ALTER TABLE cart.cart_items
    DROP CONSTRAINT cart_items_sku_check,
    ADD CONSTRAINT cart_items_sku_check
        CHECK (sku ~ '^[A-Za-z0-9._-]+$' AND char_length(sku) <= 64);
