-- The CHECK constraints of checkout.checkouts (44) and checkout.saga_steps (14) become one CHECK each, calling
-- one function with the row: the same rules, refused with the same SQLSTATE (23514 check_violation) and the same
-- constraint name, tested in the same order (PostgreSQL checks a table's constraints in name order; each
-- function tests them in that order). payment_svc's 0006 did the same for the payment row.
--
-- Why: PostgreSQL 15 prepares every CHECK expression of a table afresh for each INSERT or UPDATE statement, so a
-- single-row write of a checkout paid the set-up of all 44 each time, and the step log's write (saga_log: the
-- finished steps' outcomes, the checkout's progress and the next intents, in one statement, six times per
-- checkout) writes both tables. Measured on the bench machine, 8 interleaved rounds of 300 autocommit
-- single-row UPDATEs by key on copies of checkout.checkouts: all 44 CHECKs 467 us of PostgreSQL CPU each
-- (median), one function CHECK 283 us, no CHECK 150 us. A PL/pgSQL function's expressions are prepared once
-- per session and reused, and the one CHECK that calls it is cheap to set up.
--
-- It is still a CHECK constraint, enforced on every write. The functions read nothing but their argument, so
-- they are IMMUTABLE as a CHECK requires. A column added to these tables later gets its rule in the function
-- (CREATE OR REPLACE FUNCTION), not as a CHECK of its own; tests/integration/test_identifier_checks.py keeps
-- the functions and the tables in step and checks that each function refuses exactly what the old CHECKs did.

CREATE FUNCTION checkout.checkout_rules(r checkout.checkouts) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF NOT ((char_length(r.card_brand) <= 32)) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_card_brand_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_card_brand_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT ((r.card_last4 ~ '^([0-9]{4})?$'::text)) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_card_last4_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_card_last4_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT ((char_length(r.cart_etag) <= 128)) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_cart_etag_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_cart_etag_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT (((r.cart_id ~ '^[A-Za-z0-9._-]+$'::text) AND (char_length(r.cart_id) <= 64))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_cart_id_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_cart_id_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT (((r.discount_minor >= 0) AND (r.discount_minor <= r.subtotal_minor))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT (((r.checkout_id ~ '^[A-Za-z0-9._-]+$'::text) AND (char_length(r.checkout_id) <= 64))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_checkout_id_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_checkout_id_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT ((char_length(r.contact_email) <= 254)) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_contact_email_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_contact_email_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT ((r.currency_code ~ '^[A-Z]{3}$'::text)) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_currency_code_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_currency_code_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT ((r.current_step = ANY (ARRAY['reserve_inventory'::text, 'extend_reservation'::text, 'authorize_payment'::text, 'create_order'::text, 'confirm_reservation'::text, 'capture_payment'::text, 'confirm_order'::text, 'convert_cart'::text]))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_current_step_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_current_step_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT ((r.last_failure_attempt >= 0)) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_last_failure_attempt_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_last_failure_attempt_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT (((r.last_failure_code ~ '^[A-Z_]*$'::text) AND (char_length(r.last_failure_code) <= 32))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_last_failure_code_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_last_failure_code_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT ((char_length(r.last_failure_message) <= 500)) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_last_failure_message_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_last_failure_message_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT (((r.last_failure_payment ~ '^[A-Za-z0-9._-]*$'::text) AND (char_length(r.last_failure_payment) <= 64))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_last_failure_payment_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_last_failure_payment_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT (((r.last_failure_reason ~ '^[A-Z][A-Z0-9_]*$'::text) AND (char_length(r.last_failure_reason) <= 64))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_last_failure_reason_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_last_failure_reason_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT ((r.last_failure_step = ANY (ARRAY['reserve_inventory'::text, 'extend_reservation'::text, 'authorize_payment'::text, 'create_order'::text, 'confirm_reservation'::text, 'capture_payment'::text, 'confirm_order'::text, 'convert_cart'::text]))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_last_failure_step_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_last_failure_step_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT (((char_length(r.lease_owner) >= 1) AND (char_length(r.lease_owner) <= 128))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_lease_owner_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_lease_owner_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT (((r.max_business_days >= 0) AND (r.max_business_days <= 60))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_max_business_days_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_max_business_days_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT (((r.min_business_days >= 0) AND (r.min_business_days <= 60))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_min_business_days_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_min_business_days_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT (((r.order_id ~ '^[A-Za-z0-9._-]+$'::text) AND (char_length(r.order_id) <= 64))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_order_id_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_order_id_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT (((r.payment_id ~ '^[A-Za-z0-9._-]+$'::text) AND (char_length(r.payment_id) <= 64))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_payment_id_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_payment_id_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT (((char_length(r.payment_token) >= 1) AND (char_length(r.payment_token) <= 256))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_payment_token_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_payment_token_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT ((r.place_attempt >= 0)) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_place_attempt_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_place_attempt_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT ((r.recoveries >= 0)) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_recoveries_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_recoveries_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT ((r.resolution_action = ANY (ARRAY['order_cancelled'::text, 'payment_voided_stock_released'::text]))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_resolution_action_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_resolution_action_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT (((char_length(r.resolution_reason) >= 1) AND (char_length(r.resolution_reason) <= 500))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_resolution_reason_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_resolution_reason_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT (((char_length(r.resolved_by) >= 1) AND (char_length(r.resolved_by) <= 128))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_resolved_by_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_resolved_by_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT ((jsonb_typeof(r.shipping_address) = 'object'::text)) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_shipping_address_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_shipping_address_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT ((r.shipping_method = ANY (ARRAY['standard'::text, 'express'::text, 'overnight'::text]))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_shipping_method_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_shipping_method_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT ((r.shipping_minor >= 0)) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_shipping_minor_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_shipping_minor_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT ((r.status = ANY (ARRAY['quoted'::text, 'placing'::text, 'completed'::text, 'failed'::text, 'cancelled'::text, 'expired'::text]))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_status_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_status_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT ((r.subtotal_minor >= 0)) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_subtotal_minor_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_subtotal_minor_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT ((r.tax_minor >= 0)) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_tax_minor_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_tax_minor_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT (((r.tax_rate_basis_points >= 0) AND (r.tax_rate_basis_points <= 10000))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_tax_rate_basis_points_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_tax_rate_basis_points_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT (((r.tax_rate_ppm >= 0) AND (r.tax_rate_ppm <= 1000000))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_tax_rate_ppm_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_tax_rate_ppm_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT (((r.user_id ~ '^[A-Za-z0-9._-]+$'::text) AND (char_length(r.user_id) <= 64))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "checkouts_user_id_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkouts_user_id_check', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT (((r.status <> 'completed'::text) OR ((r.order_id IS NOT NULL) AND (r.payment_id IS NOT NULL)))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "completed_has_order"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'completed_has_order', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT (((r.status = ANY (ARRAY['completed'::text, 'failed'::text, 'cancelled'::text, 'expired'::text])) = (r.ended_at IS NOT NULL))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "ended_has_time"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ended_has_time', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT (((r.status <> 'failed'::text) OR (r.last_failure_reason IS NOT NULL))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "failed_says_why"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'failed_says_why', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT (((r.last_failure_reason IS NULL) = ((r.last_failure_step IS NULL) AND (r.last_failure_at IS NULL)))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "failure_is_whole"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'failure_is_whole', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT (((r.lease_owner IS NULL) = (r.lease_expires_at IS NULL))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "lease_is_whole"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'lease_is_whole', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT (((r.resolution_action IS NULL) OR (r.status = 'failed'::text))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "only_failed_is_resolved"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'only_failed_is_resolved', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT ((((r.resolution_action IS NULL) = (r.resolution_reason IS NULL)) AND ((r.resolution_action IS NULL) = (r.resolved_by IS NULL)) AND ((r.resolution_action IS NULL) = (r.resolved_at IS NULL)))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "resolution_is_whole"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'resolution_is_whole', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT ((r.total_minor = (((r.subtotal_minor - r.discount_minor) + r.shipping_minor) + r.tax_minor))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "total_adds_up"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'total_adds_up', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    IF NOT (((r.min_business_days <= r.max_business_days) AND (r.earliest_delivery_date <= r.latest_delivery_date))) THEN
        RAISE EXCEPTION 'new row for relation "checkouts" violates check constraint "window_in_order"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'window_in_order', SCHEMA = 'checkout', TABLE = 'checkouts';
    END IF;
    RETURN true;
END
$$;

ALTER TABLE checkout.checkouts
    DROP CONSTRAINT checkouts_card_brand_check,
    DROP CONSTRAINT checkouts_card_last4_check,
    DROP CONSTRAINT checkouts_cart_etag_check,
    DROP CONSTRAINT checkouts_cart_id_check,
    DROP CONSTRAINT checkouts_check,
    DROP CONSTRAINT checkouts_checkout_id_check,
    DROP CONSTRAINT checkouts_contact_email_check,
    DROP CONSTRAINT checkouts_currency_code_check,
    DROP CONSTRAINT checkouts_current_step_check,
    DROP CONSTRAINT checkouts_last_failure_attempt_check,
    DROP CONSTRAINT checkouts_last_failure_code_check,
    DROP CONSTRAINT checkouts_last_failure_message_check,
    DROP CONSTRAINT checkouts_last_failure_payment_check,
    DROP CONSTRAINT checkouts_last_failure_reason_check,
    DROP CONSTRAINT checkouts_last_failure_step_check,
    DROP CONSTRAINT checkouts_lease_owner_check,
    DROP CONSTRAINT checkouts_max_business_days_check,
    DROP CONSTRAINT checkouts_min_business_days_check,
    DROP CONSTRAINT checkouts_order_id_check,
    DROP CONSTRAINT checkouts_payment_id_check,
    DROP CONSTRAINT checkouts_payment_token_check,
    DROP CONSTRAINT checkouts_place_attempt_check,
    DROP CONSTRAINT checkouts_recoveries_check,
    DROP CONSTRAINT checkouts_resolution_action_check,
    DROP CONSTRAINT checkouts_resolution_reason_check,
    DROP CONSTRAINT checkouts_resolved_by_check,
    DROP CONSTRAINT checkouts_shipping_address_check,
    DROP CONSTRAINT checkouts_shipping_method_check,
    DROP CONSTRAINT checkouts_shipping_minor_check,
    DROP CONSTRAINT checkouts_status_check,
    DROP CONSTRAINT checkouts_subtotal_minor_check,
    DROP CONSTRAINT checkouts_tax_minor_check,
    DROP CONSTRAINT checkouts_tax_rate_basis_points_check,
    DROP CONSTRAINT checkouts_tax_rate_ppm_check,
    DROP CONSTRAINT checkouts_user_id_check,
    DROP CONSTRAINT completed_has_order,
    DROP CONSTRAINT ended_has_time,
    DROP CONSTRAINT failed_says_why,
    DROP CONSTRAINT failure_is_whole,
    DROP CONSTRAINT lease_is_whole,
    DROP CONSTRAINT only_failed_is_resolved,
    DROP CONSTRAINT resolution_is_whole,
    DROP CONSTRAINT total_adds_up,
    DROP CONSTRAINT window_in_order,
    ADD CONSTRAINT checkout_rules CHECK (checkout.checkout_rules(checkouts));

CREATE FUNCTION checkout.saga_step_rules(r checkout.saga_steps) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF NOT (((r.status = ANY (ARRAY['succeeded'::text, 'failed'::text, 'compensated'::text])) = (r.ended_at IS NOT NULL))) THEN
        RAISE EXCEPTION 'new row for relation "saga_steps" violates check constraint "ended_has_time"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ended_has_time', SCHEMA = 'checkout', TABLE = 'saga_steps';
    END IF;
    IF NOT (((r.step = ANY (ARRAY['reserve_inventory'::text, 'authorize_payment'::text])) OR (r.compensation IS NULL))) THEN
        RAISE EXCEPTION 'new row for relation "saga_steps" violates check constraint "no_undo_from_the_pivot_on"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'no_undo_from_the_pivot_on', SCHEMA = 'checkout', TABLE = 'saga_steps';
    END IF;
    IF NOT (((r.status <> ALL (ARRAY['compensating'::text, 'compensated'::text])) OR (r.compensation IS NOT NULL))) THEN
        RAISE EXCEPTION 'new row for relation "saga_steps" violates check constraint "only_undoable_steps_compensate"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'only_undoable_steps_compensate', SCHEMA = 'checkout', TABLE = 'saga_steps';
    END IF;
    IF NOT (((r.attempts_before_retry >= 0) AND (r.attempts_before_retry <= r.attempts))) THEN
        RAISE EXCEPTION 'new row for relation "saga_steps" violates check constraint "retry_budget_within_attempts"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'retry_budget_within_attempts', SCHEMA = 'checkout', TABLE = 'saga_steps';
    END IF;
    IF NOT ((r.attempt >= 0)) THEN
        RAISE EXCEPTION 'new row for relation "saga_steps" violates check constraint "saga_steps_attempt_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'saga_steps_attempt_check', SCHEMA = 'checkout', TABLE = 'saga_steps';
    END IF;
    IF NOT ((r.attempts >= 0)) THEN
        RAISE EXCEPTION 'new row for relation "saga_steps" violates check constraint "saga_steps_attempts_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'saga_steps_attempts_check', SCHEMA = 'checkout', TABLE = 'saga_steps';
    END IF;
    IF NOT ((r.compensation ~ '^/[A-Za-z0-9_.]+/[A-Za-z0-9_]+$'::text)) THEN
        RAISE EXCEPTION 'new row for relation "saga_steps" violates check constraint "saga_steps_compensation_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'saga_steps_compensation_check', SCHEMA = 'checkout', TABLE = 'saga_steps';
    END IF;
    IF NOT (((r.last_error_code ~ '^[A-Z_]*$'::text) AND (char_length(r.last_error_code) <= 32))) THEN
        RAISE EXCEPTION 'new row for relation "saga_steps" violates check constraint "saga_steps_last_error_code_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'saga_steps_last_error_code_check', SCHEMA = 'checkout', TABLE = 'saga_steps';
    END IF;
    IF NOT ((char_length(r.last_error_reason) <= 64)) THEN
        RAISE EXCEPTION 'new row for relation "saga_steps" violates check constraint "saga_steps_last_error_reason_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'saga_steps_last_error_reason_check', SCHEMA = 'checkout', TABLE = 'saga_steps';
    END IF;
    IF NOT (((r.payment_id ~ '^[A-Za-z0-9._-]*$'::text) AND (char_length(r.payment_id) <= 64))) THEN
        RAISE EXCEPTION 'new row for relation "saga_steps" violates check constraint "saga_steps_payment_id_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'saga_steps_payment_id_check', SCHEMA = 'checkout', TABLE = 'saga_steps';
    END IF;
    IF NOT ((jsonb_typeof(r.result) = 'object'::text)) THEN
        RAISE EXCEPTION 'new row for relation "saga_steps" violates check constraint "saga_steps_result_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'saga_steps_result_check', SCHEMA = 'checkout', TABLE = 'saga_steps';
    END IF;
    IF NOT ((r.status = ANY (ARRAY['pending'::text, 'running'::text, 'succeeded'::text, 'failed'::text, 'compensating'::text, 'compensated'::text]))) THEN
        RAISE EXCEPTION 'new row for relation "saga_steps" violates check constraint "saga_steps_status_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'saga_steps_status_check', SCHEMA = 'checkout', TABLE = 'saga_steps';
    END IF;
    IF NOT ((r.step = ANY (ARRAY['reserve_inventory'::text, 'extend_reservation'::text, 'authorize_payment'::text, 'create_order'::text, 'confirm_reservation'::text, 'capture_payment'::text, 'confirm_order'::text, 'convert_cart'::text]))) THEN
        RAISE EXCEPTION 'new row for relation "saga_steps" violates check constraint "saga_steps_step_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'saga_steps_step_check', SCHEMA = 'checkout', TABLE = 'saga_steps';
    END IF;
    IF NOT (((r.step_key ~ '^[A-Za-z0-9._:-]+$'::text) AND (char_length(r.step_key) <= 128))) THEN
        RAISE EXCEPTION 'new row for relation "saga_steps" violates check constraint "saga_steps_step_key_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'saga_steps_step_key_check', SCHEMA = 'checkout', TABLE = 'saga_steps';
    END IF;
    RETURN true;
END
$$;

ALTER TABLE checkout.saga_steps
    DROP CONSTRAINT ended_has_time,
    DROP CONSTRAINT no_undo_from_the_pivot_on,
    DROP CONSTRAINT only_undoable_steps_compensate,
    DROP CONSTRAINT retry_budget_within_attempts,
    DROP CONSTRAINT saga_steps_attempt_check,
    DROP CONSTRAINT saga_steps_attempts_check,
    DROP CONSTRAINT saga_steps_compensation_check,
    DROP CONSTRAINT saga_steps_last_error_code_check,
    DROP CONSTRAINT saga_steps_last_error_reason_check,
    DROP CONSTRAINT saga_steps_payment_id_check,
    DROP CONSTRAINT saga_steps_result_check,
    DROP CONSTRAINT saga_steps_status_check,
    DROP CONSTRAINT saga_steps_step_check,
    DROP CONSTRAINT saga_steps_step_key_check,
    ADD CONSTRAINT saga_step_rules CHECK (checkout.saga_step_rules(saga_steps));
