-- name: idempotency_key
-- The record of an idempotency key of a user's RPC, locked until the transaction ends; in the same statement
-- a key older than its 24 hours is dropped, so its reuse is a new request (the rest of the transaction sees
-- it gone; this statement's own SELECT skips it by its expiry).
WITH forgotten AS (
    DELETE FROM checkout.idempotency_keys
    WHERE user_id = %(user_id)s AND rpc = %(rpc)s AND idempotency_key = %(key)s AND expires_at <= now()
)
SELECT fingerprint, state, locked_until, checkout_id, response_code, response
FROM checkout.idempotency_keys
WHERE user_id = %(user_id)s AND rpc = %(rpc)s AND idempotency_key = %(key)s AND expires_at > now()
FOR UPDATE

-- name: insert_idempotency_key
-- Takes a key for a first request: in progress, held for `hold_seconds`.
INSERT INTO checkout.idempotency_keys (user_id, rpc, idempotency_key, fingerprint, locked_until, checkout_id)
VALUES (%(user_id)s, %(rpc)s, %(key)s, %(fingerprint)s, now() + make_interval(secs => %(hold_seconds)s), %(checkout_id)s)

-- name: complete_idempotency_key
-- Records a request's outcome for replays: status code 0 (the checkout, read afresh) or an error.
UPDATE checkout.idempotency_keys
SET state = 'completed', locked_until = NULL, completed_at = now(), response_code = %(code)s, response = %(response)s
WHERE user_id = %(user_id)s AND rpc = %(rpc)s AND idempotency_key = %(key)s

-- name: delete_idempotency_key
-- Lets a key go after a transient failure: a retry with it runs again.
DELETE FROM checkout.idempotency_keys WHERE user_id = %(user_id)s AND rpc = %(rpc)s AND idempotency_key = %(key)s

-- name: insert_checkout
-- A new QUOTED checkout with its frozen quote and its priced lines (in cart order; one JSON array, one parameter),
-- in one statement: the lines' foreign key to the checkout is checked at the statement's end.
WITH lines AS (
    INSERT INTO checkout.checkout_lines (checkout_id, sku, position, product_name, quantity, currency_code,
        unit_price_minor, line_total_minor)
    SELECT %(checkout_id)s, l.sku, l.position, l.product_name, l.quantity, %(currency_code)s, l.unit_price_minor,
           l.line_total_minor
    FROM jsonb_to_recordset(%(lines)s::jsonb)
         AS l(sku text, position smallint, product_name text, quantity integer, unit_price_minor bigint,
              line_total_minor bigint)
)
INSERT INTO checkout.checkouts (
    checkout_id, user_id, cart_id, status, shipping_address, shipping_method, contact_email, currency_code,
    subtotal_minor, discount_minor, shipping_minor, tax_minor, total_minor, tax_rate_basis_points, tax_rate_ppm,
    shipping_taxed, free_shipping_applied, min_business_days, max_business_days, earliest_delivery_date,
    latest_delivery_date, reservation_expires_at, cart_etag, shipping_options, current_step)
VALUES (
    %(checkout_id)s, %(user_id)s, %(cart_id)s, 'quoted', %(shipping_address)s, %(shipping_method)s, %(contact_email)s,
    %(currency_code)s, %(subtotal_minor)s, %(discount_minor)s, %(shipping_minor)s, %(tax_minor)s, %(total_minor)s,
    %(tax_rate_basis_points)s, %(tax_rate_ppm)s, %(shipping_taxed)s, %(free_shipping_applied)s, %(min_business_days)s,
    %(max_business_days)s, %(earliest_delivery_date)s, %(latest_delivery_date)s, %(reservation_expires_at)s,
    %(cart_etag)s, %(shipping_options)s, 'reserve_inventory')
RETURNING *

-- name: checkout
-- A checkout by id, with its lines in cart order as one JSON array (`lines`): one round trip.
SELECT c.*, (SELECT COALESCE(json_agg(json_build_object('sku', l.sku, 'product_name', l.product_name,
                 'quantity', l.quantity, 'unit_price_minor', l.unit_price_minor) ORDER BY l.position), '[]')
             FROM checkout.checkout_lines l WHERE l.checkout_id = c.checkout_id) AS lines
FROM checkout.checkouts c WHERE c.checkout_id = %(checkout_id)s

-- name: checkout_for_update
-- A checkout by id with its lines (as `checkout`), the checkout's row locked until the transaction ends.
SELECT c.*, (SELECT COALESCE(json_agg(json_build_object('sku', l.sku, 'product_name', l.product_name,
                 'quantity', l.quantity, 'unit_price_minor', l.unit_price_minor) ORDER BY l.position), '[]')
             FROM checkout.checkout_lines l WHERE l.checkout_id = c.checkout_id) AS lines
FROM checkout.checkouts c WHERE c.checkout_id = %(checkout_id)s
FOR UPDATE OF c

-- name: open_checkouts_of_cart
-- The cart's QUOTED or PLACING checkout (at most one), locked.
SELECT checkout_id, status FROM checkout.checkouts
WHERE cart_id = %(cart_id)s AND status IN ('quoted', 'placing')
FOR UPDATE

-- name: start_attempt
-- QUOTED → PLACING for a new PlaceOrder attempt, leased to this replica, with the intents of the attempt's first
-- steps (a JSON array; their keys made for the new attempt, place_attempt + 1) in the same statement.
WITH intents AS (
    INSERT INTO checkout.saga_steps (checkout_id, attempt, step, step_key, status, compensation, attempts)
    SELECT c.checkout_id, c.place_attempt + 1, i.step, i.step_key, 'running', i.compensation, 1
    FROM checkout.checkouts c, jsonb_to_recordset(%(intents)s::jsonb) AS i(step text, step_key text, compensation text)
    WHERE c.checkout_id = %(checkout_id)s AND c.status = 'quoted'
)
UPDATE checkout.checkouts
SET status = 'placing', place_attempt = place_attempt + 1, payment_token = %(payment_token)s,
    payment_id = NULL, current_step = 'extend_reservation', recoveries = 0, traceparent = %(traceparent)s,
    lease_owner = %(owner)s, lease_expires_at = now() + make_interval(secs => %(lease_seconds)s), updated_at = now()
WHERE checkout_id = %(checkout_id)s AND status = 'quoted'
RETURNING *

-- name: traceparent
-- The trace context of the request that started the checkout's current attempt ('' when untraced).
SELECT traceparent FROM checkout.checkouts WHERE checkout_id = %(checkout_id)s

-- name: cancel_checkout
-- Ends a checkout CANCELLED (by CancelCheckout, or superseded by a newer StartCheckout of its cart): no step
-- can need its card token again, and its lease goes.
UPDATE checkout.checkouts
SET status = 'cancelled', ended_at = now(), payment_token = NULL, current_step = NULL, lease_owner = NULL,
    lease_expires_at = NULL, updated_at = now()
WHERE checkout_id = %(checkout_id)s

-- name: record_failure
-- Why the last attempt failed.
UPDATE checkout.checkouts
SET last_failure_reason = %(reason)s, last_failure_message = %(message)s, last_failure_step = %(step)s,
    last_failure_at = now(), last_failure_code = %(code)s, last_failure_attempt = %(attempt)s,
    last_failure_payment = %(payment_id)s, updated_at = now()
WHERE checkout_id = %(checkout_id)s

-- name: saga_log
-- The step log's write between two calls, in one statement: the outcomes of the steps that finished since
-- the last write (a JSON array, in step order), the checkout's progress (the step it is on, and the ids the
-- outcomes produced), and the intents of the steps about to be called (running, one more attempt, the
-- undo registered). Returns each intended step's calls counted against its retry budget (as step_intent).
WITH done AS (
    UPDATE checkout.saga_steps s
    SET status = 'succeeded', result = d.result, payment_id = COALESCE(d.payment_id, s.payment_id),
        ended_at = now(), updated_at = now()
    FROM jsonb_to_recordset(%(done)s::jsonb) AS d(step text, result jsonb, payment_id text)
    WHERE s.checkout_id = %(checkout_id)s AND s.attempt = %(attempt)s AND s.step = d.step
), progress AS (
    UPDATE checkout.checkouts
    SET current_step = %(current_step)s, payment_id = COALESCE(%(payment_id)s, payment_id),
        order_id = COALESCE(%(order_id)s, order_id), card_brand = COALESCE(%(card_brand)s, card_brand),
        card_last4 = COALESCE(%(card_last4)s, card_last4),
        reservation_expires_at = COALESCE(%(expires_at)s::timestamptz, reservation_expires_at), updated_at = now()
    WHERE checkout_id = %(checkout_id)s
)
INSERT INTO checkout.saga_steps (checkout_id, attempt, step, step_key, status, compensation, attempts)
SELECT %(checkout_id)s::text, %(attempt)s::integer, i.step, i.step_key, 'running', i.compensation, 1
FROM jsonb_to_recordset(%(intents)s::jsonb) AS i(step text, step_key text, compensation text)
ON CONFLICT (checkout_id, attempt, step) DO UPDATE
SET attempts = checkout.saga_steps.attempts + 1, status = 'running', updated_at = now()
RETURNING step, attempts - attempts_before_retry AS attempts

-- name: saga_end
-- A saga's end in one statement: the outcomes not written yet (as in saga_log, with the ids they produced)
-- and the checkout's next state (as end_checkout); when it COMPLETED, the answer (status 0) of the PlaceOrder
-- whose key is given, if that request has not recorded it yet. Returns the checkout.
WITH done AS (
    UPDATE checkout.saga_steps s
    SET status = 'succeeded', result = d.result, payment_id = COALESCE(d.payment_id, s.payment_id),
        ended_at = now(), updated_at = now()
    FROM jsonb_to_recordset(%(done)s::jsonb) AS d(step text, result jsonb, payment_id text)
    WHERE s.checkout_id = %(checkout_id)s AND s.attempt = %(attempt)s AND s.step = d.step
), answered AS (
    UPDATE checkout.idempotency_keys
    SET state = 'completed', locked_until = NULL, completed_at = now(), response_code = 0, response = ''::bytea
    WHERE user_id = %(key_user_id)s AND rpc = %(key_rpc)s AND idempotency_key = %(key)s AND state = 'in_progress'
      AND %(status)s = 'completed'
)
UPDATE checkout.checkouts
SET status = %(status)s, ended_at = CASE WHEN %(status)s IN ('quoted', 'placing') THEN NULL ELSE now() END,
    payment_token = CASE WHEN %(status)s IN ('placing', 'failed') THEN payment_token END,
    current_step = %(current_step)s, lease_owner = NULL, lease_expires_at = NULL, updated_at = now(),
    payment_id = COALESCE(%(payment_id)s, payment_id), order_id = COALESCE(%(order_id)s, order_id),
    card_brand = COALESCE(%(card_brand)s, card_brand), card_last4 = COALESCE(%(card_last4)s, card_last4),
    reservation_expires_at = COALESCE(%(expires_at)s::timestamptz, reservation_expires_at)
WHERE checkout_id = %(checkout_id)s
RETURNING *

-- name: step_error
-- After a failed call: the error (a refusal ends the step FAILED; a transport failure leaves it RUNNING).
UPDATE checkout.saga_steps
SET status = %(status)s, last_error_reason = %(reason)s, last_error_code = %(code)s,
    payment_id = COALESCE(%(payment_id)s, payment_id),
    ended_at = CASE WHEN %(status)s = 'failed' THEN now() ELSE NULL END, updated_at = now()
WHERE checkout_id = %(checkout_id)s AND attempt = %(attempt)s AND step = %(step)s

-- name: step_compensation
-- A step being undone ('compensating') or undone ('compensated').
UPDATE checkout.saga_steps
SET status = %(status)s, ended_at = CASE WHEN %(status)s = 'compensated' THEN now() ELSE NULL END,
    updated_at = now()
WHERE checkout_id = %(checkout_id)s AND attempt = %(attempt)s AND step = %(step)s

-- name: insert_reserved_step
-- StartCheckout's reservation in the step log (attempt 0), its release registered.
INSERT INTO checkout.saga_steps (checkout_id, attempt, step, step_key, status, compensation, attempts, ended_at)
VALUES (%(checkout_id)s, 0, 'reserve_inventory', %(step_key)s, 'succeeded', %(compensation)s, 1, now())
RETURNING *

-- name: steps
-- Every step of a checkout, by attempt in saga order (steps that run together start in the same instant).
SELECT * FROM checkout.saga_steps WHERE checkout_id = %(checkout_id)s
ORDER BY attempt, array_position(ARRAY['reserve_inventory', 'extend_reservation', 'authorize_payment', 'create_order',
    'confirm_reservation', 'capture_payment', 'confirm_order', 'convert_cart'], step)

-- name: renew_lease
-- Keeps this replica's lease on a saga it is running; no row when another replica took it.
UPDATE checkout.checkouts SET lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
WHERE checkout_id = %(checkout_id)s AND status = 'placing' AND lease_owner = %(owner)s
RETURNING checkout_id

-- name: claim_lapsed
-- The recovery worker's claim: PLACING sagas whose lease lapsed (their replica died), skipping locked rows.
UPDATE checkout.checkouts SET lease_owner = %(owner)s,
    lease_expires_at = now() + make_interval(secs => %(lease_seconds)s), recoveries = recoveries + 1
WHERE checkout_id IN (
    SELECT checkout_id FROM checkout.checkouts
    WHERE status = 'placing' AND (lease_expires_at IS NULL OR lease_expires_at < now())
    ORDER BY lease_expires_at NULLS FIRST
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED)
RETURNING checkout_id

-- name: expire_lapsed_quotes
-- QUOTED checkouts whose reservation lapsed become EXPIRED (skipping locked rows).
UPDATE checkout.checkouts SET status = 'expired', ended_at = now(), updated_at = now()
WHERE checkout_id IN (
    SELECT checkout_id FROM checkout.checkouts
    WHERE status = 'quoted' AND reservation_expires_at < now()
    ORDER BY reservation_expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED)
RETURNING checkout_id, user_id, contact_email

-- name: insert_event
-- A checkout event in the outbox, in the transaction that changed the checkout.
INSERT INTO checkout.checkout_events (event_id, checkout_id, event_type, payload)
VALUES (%(event_id)s, %(checkout_id)s, %(event_type)s, %(payload)s)
ON CONFLICT (event_id) DO NOTHING

-- name: unfinished_releases
-- Reservations of ended checkouts whose release was registered but not confirmed done.
SELECT s.checkout_id FROM checkout.saga_steps s JOIN checkout.checkouts c USING (checkout_id)
WHERE s.step = 'reserve_inventory' AND s.status = 'compensating'
  AND c.status IN ('cancelled', 'expired', 'failed') AND s.updated_at < now() - make_interval(secs => %(after_seconds)s)
LIMIT %(limit)s

-- name: list_checkouts
-- Checkouts in a status, oldest change first, for operators (optionally unchanged for a while), each with its
-- lines (as `checkout`).
SELECT c.*, (SELECT COALESCE(json_agg(json_build_object('sku', l.sku, 'product_name', l.product_name,
                 'quantity', l.quantity, 'unit_price_minor', l.unit_price_minor) ORDER BY l.position), '[]')
             FROM checkout.checkout_lines l WHERE l.checkout_id = c.checkout_id) AS lines
FROM checkout.checkouts c
WHERE c.status = %(status)s AND c.updated_at <= now() - make_interval(secs => %(older_than_seconds)s)
  AND (%(after)s::text IS NULL OR c.checkout_id > %(after)s)
ORDER BY c.checkout_id
LIMIT %(limit)s

-- name: resume_failed
-- An operator's retry: a FAILED checkout whose order exists goes back to PLACING under this replica's lease.
UPDATE checkout.checkouts
SET status = 'placing', ended_at = NULL, current_step = last_failure_step, recoveries = 0,
    lease_owner = %(owner)s, lease_expires_at = now() + make_interval(secs => %(lease_seconds)s), updated_at = now()
WHERE checkout_id = %(checkout_id)s AND status = 'failed' AND order_id IS NOT NULL AND resolution_action IS NULL
RETURNING checkout_id

-- name: reset_failed_steps
-- The failed steps of a checkout's current attempt become PENDING again, to be retried with their keys and
-- a fresh retry budget (the calls made so far stay counted in `attempts`).
UPDATE checkout.saga_steps s
SET status = 'pending', ended_at = NULL, attempts_before_retry = s.attempts, updated_at = now()
FROM checkout.checkouts c
WHERE s.checkout_id = c.checkout_id AND c.checkout_id = %(checkout_id)s AND s.attempt = c.place_attempt
  AND s.status IN ('failed', 'running')

-- name: resolution
-- How an operator resolved a checkout, if one did.
SELECT resolution_action, resolution_reason, resolved_by, resolved_at FROM checkout.checkouts
WHERE checkout_id = %(checkout_id)s AND resolution_action IS NOT NULL

-- name: record_resolution
-- Records an operator's resolution of a FAILED checkout.
UPDATE checkout.checkouts
SET resolution_action = %(action)s, resolution_reason = %(reason)s, resolved_by = %(resolved_by)s,
    resolved_at = now(), updated_at = now()
WHERE checkout_id = %(checkout_id)s AND status = 'failed' AND resolution_action IS NULL

-- name: update_quote
-- UpdateCheckout: a QUOTED checkout's new shipping choice, address or e-mail, and the quote they make.
UPDATE checkout.checkouts
SET shipping_address = %(shipping_address)s, shipping_method = %(shipping_method)s, contact_email = %(contact_email)s,
    shipping_minor = %(shipping_minor)s, tax_minor = %(tax_minor)s, total_minor = %(total_minor)s,
    tax_rate_ppm = %(tax_rate_ppm)s, tax_rate_basis_points = %(tax_rate_basis_points)s,
    shipping_taxed = %(shipping_taxed)s, free_shipping_applied = %(free_shipping_applied)s,
    min_business_days = %(min_business_days)s, max_business_days = %(max_business_days)s,
    earliest_delivery_date = %(earliest_delivery_date)s, latest_delivery_date = %(latest_delivery_date)s,
    shipping_options = %(shipping_options)s, updated_at = now()
WHERE checkout_id = %(checkout_id)s AND status = 'quoted'
RETURNING checkout_id

-- name: claim_unpublished_events
-- The oldest checkout events not yet on the bus, locked (skipping rows another replica's relay holds).
SELECT event_id, checkout_id, event_type, payload FROM checkout.checkout_events
WHERE published_at IS NULL
ORDER BY position
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED

-- name: mark_events_published
-- Events the relay put on the bus.
UPDATE checkout.checkout_events SET published_at = now() WHERE event_id = ANY(%(event_ids)s)
