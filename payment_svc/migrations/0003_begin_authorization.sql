-- AuthorizePayment's first step in one round trip: a function, because the checks must run after the
-- per-checkout lock is taken and see what committed before it (each statement of a PL/pgSQL function
-- takes a fresh snapshot under READ COMMITTED; one plain SQL statement would read a snapshot taken before
-- it waited for the lock, and could miss a concurrent VoidPayment's cancellation).
--
-- Returns one row (outcome, payment_id):
--   existing  - a payment with this checkout and key exists (the caller compares fingerprints, replays);
--   cancelled - VoidPayment cancelled this key before any payment existed;
--   live      - the checkout has another payment that is not failed, voided or expired (payment_id is it);
--   created   - the payment is recorded PROCESSING with its first two events.
CREATE FUNCTION payment.begin_authorization(
    p_payment_id text, p_checkout_id text, p_idempotency_key text, p_fingerprint bytea, p_currency_code text,
    p_amount_minor bigint, p_grace_seconds double precision
) RETURNS TABLE (outcome text, payment_id text) LANGUAGE plpgsql AS $$
DECLARE
    found_id text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('payment.checkout:' || p_checkout_id, 0));
    SELECT p.payment_id INTO found_id FROM payment.payments p
    WHERE p.checkout_id = p_checkout_id AND p.idempotency_key = p_idempotency_key;
    IF found_id IS NOT NULL THEN
        RETURN QUERY SELECT 'existing'::text, found_id;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM payment.authorization_cancellations c
               WHERE c.checkout_id = p_checkout_id AND c.idempotency_key = p_idempotency_key) THEN
        RETURN QUERY SELECT 'cancelled'::text, NULL::text;
        RETURN;
    END IF;
    SELECT p.payment_id INTO found_id FROM payment.payments p
    WHERE p.checkout_id = p_checkout_id AND p.status NOT IN ('failed', 'voided', 'expired');
    IF found_id IS NOT NULL THEN
        RETURN QUERY SELECT 'live'::text, found_id;
        RETURN;
    END IF;
    INSERT INTO payment.payments (payment_id, checkout_id, idempotency_key, request_fingerprint, status,
                                  currency_code, amount_minor, next_reconcile_at)
    VALUES (p_payment_id, p_checkout_id, p_idempotency_key, p_fingerprint, 'processing', p_currency_code,
            p_amount_minor, now() + make_interval(secs => p_grace_seconds));
    INSERT INTO payment.payment_events (payment_id, from_status, to_status, cause)
    VALUES (p_payment_id, NULL, 'pending', 'authorize'),
           (p_payment_id, 'pending', 'processing', 'authorize: sent to the PSP');
    RETURN QUERY SELECT 'created'::text, p_payment_id;
END
$$;
