-- name: payment
-- One payment by id.
SELECT * FROM payment.payments WHERE payment_id = %(payment_id)s

-- name: lock_payment
-- One payment by id, locked for a state change.
SELECT * FROM payment.payments WHERE payment_id = %(payment_id)s FOR UPDATE

-- name: payment_by_key
-- The payment AuthorizePayment created for a checkout and idempotency key.
SELECT * FROM payment.payments WHERE checkout_id = %(checkout_id)s AND idempotency_key = %(idempotency_key)s

-- name: lock_checkout
-- Serializes AuthorizePayment and VoidPayment-by-key of one checkout (the cancellation marker race).
SELECT pg_advisory_xact_lock(hashtextextended('payment.checkout:' || %(checkout_id)s, 0))

-- name: insert_cancellation
-- Records that the authorization with this key is cancelled before it existed.
INSERT INTO payment.authorization_cancellations (checkout_id, idempotency_key, reason)
VALUES (%(checkout_id)s, %(idempotency_key)s, %(reason)s)
ON CONFLICT DO NOTHING
RETURNING *

-- name: begin_authorization
-- AuthorizePayment's first step in one round trip (payment.begin_authorization, migration 0003): under the
-- checkout's lock, the payment with this key, a cancellation, the checkout's live payment, or a new
-- PROCESSING payment with its first two events.
SELECT outcome, payment_id FROM payment.begin_authorization(%(payment_id)s, %(checkout_id)s, %(idempotency_key)s,
    %(fingerprint)s, %(currency_code)s, %(amount_minor)s, %(grace_seconds)s)
-- name: insert_event
-- Appends one state change with the PSP answer that caused it.
INSERT INTO payment.payment_events (payment_id, from_status, to_status, cause, psp_response)
VALUES (%(payment_id)s, %(from_status)s, %(to_status)s, %(cause)s, %(psp_response)s)

-- name: mark_authorized
-- PROCESSING -> AUTHORIZED with the PSP's reference, expiry and card summary, and its event, returned with its
-- details; no row when the payment was settled already.
WITH p AS (
    UPDATE payment.payments
    SET status = 'authorized', psp_reference = %(psp_reference)s, authorized_at = now(),
        authorization_expires_at = %(expires_at)s, method_type = 'card', card_brand = %(brand)s,
        card_last4 = %(last4)s, card_exp_month = %(exp_month)s, card_exp_year = %(exp_year)s,
        card_funding = %(funding)s, next_reconcile_at = NULL, updated_at = now()
    WHERE payment_id = %(payment_id)s AND status = 'processing'
    RETURNING *
), e AS (
    INSERT INTO payment.payment_events (payment_id, from_status, to_status, cause, psp_response)
    SELECT payment_id, 'processing', 'authorized', %(cause)s, %(psp_response)s FROM p
    RETURNING event_id, from_status, to_status, cause, created_at
)
-- with the history (this statement's event included: the snapshot does not see it) and refunds
SELECT p.*,
    (SELECT coalesce(json_agg(json_build_object(
         'from_status', h.from_status, 'to_status', h.to_status, 'cause', h.cause, 'created_at', h.created_at)
         ORDER BY h.event_id), '[]')
     FROM (SELECT event_id, from_status, to_status, cause, created_at FROM payment.payment_events
           WHERE payment_id = %(payment_id)s
           UNION ALL SELECT event_id, from_status, to_status, cause, created_at FROM e) AS h) AS history,
    (SELECT coalesce(json_agg(json_build_object(
         'refund_id', refund_id, 'payment_id', payment_id, 'idempotency_key', idempotency_key,
         'request_fingerprint', encode(request_fingerprint, 'hex'), 'amount_minor', amount_minor, 'reason', reason,
         'note', note, 'status', status, 'psp_reference', psp_reference, 'created_at', created_at,
         'completed_at', completed_at) ORDER BY created_at, refund_id), '[]')
     FROM payment.refunds WHERE payment_id = %(payment_id)s) AS refunds
FROM p

-- name: mark_failed
-- PROCESSING -> FAILED with why (and the card summary when the PSP gave one), and its event; no row when the
-- payment was settled already.
WITH p AS (
    UPDATE payment.payments
    SET status = 'failed', failure_reason = %(failure_reason)s, psp_decline_code = %(decline_code)s,
        failure_message = %(message)s, method_type = %(method_type)s, card_brand = %(brand)s,
        card_last4 = %(last4)s, card_exp_month = %(exp_month)s, card_exp_year = %(exp_year)s,
        card_funding = %(funding)s, next_reconcile_at = NULL, updated_at = now()
    WHERE payment_id = %(payment_id)s AND status = 'processing'
    RETURNING *
), e AS (
    INSERT INTO payment.payment_events (payment_id, from_status, to_status, cause, psp_response)
    SELECT payment_id, 'processing', 'failed', %(cause)s, %(psp_response)s FROM p
)
SELECT * FROM p

-- name: begin_pending
-- Records a capture or void about to be sent to the PSP; the reconciler settles it if the answer is lost.
UPDATE payment.payments
SET pending_operation = %(operation)s, operation_attempt = operation_attempt + 1, pending_order_id = %(order_id)s,
    pending_amount_minor = %(amount_minor)s,
    capture_idempotency_key = coalesce(%(capture_key)s, capture_idempotency_key),
    capture_fingerprint = coalesce(%(capture_fingerprint)s, capture_fingerprint),
    next_reconcile_at = now() + make_interval(secs => %(grace_seconds)s), updated_at = now()
WHERE payment_id = %(payment_id)s
RETURNING *

-- name: begin_capture
-- The common capture in one statement: an AUTHORIZED payment with nothing pending and an unexpired hold
-- gets its capture recorded as pending; no row means the careful path (lock, decide) must run. Returns what
-- the PSP call needs (the settlement returns the whole payment).
UPDATE payment.payments
SET pending_operation = 'capture', operation_attempt = operation_attempt + 1, pending_order_id = %(order_id)s,
    pending_amount_minor = coalesce(%(amount_minor)s, amount_minor),
    capture_idempotency_key = %(capture_key)s, capture_fingerprint = %(capture_fingerprint)s,
    next_reconcile_at = now() + make_interval(secs => %(grace_seconds)s), updated_at = now()
WHERE payment_id = %(payment_id)s AND status = 'authorized' AND pending_operation IS NULL
  AND authorization_expires_at > now()
  AND (%(amount_minor)s::bigint IS NULL OR (%(amount_minor)s::bigint <= amount_minor AND currency_code = %(currency_code)s))
  AND (capture_idempotency_key IS DISTINCT FROM %(capture_key)s OR capture_fingerprint = %(capture_fingerprint)s)
RETURNING payment_id, psp_reference, pending_operation, pending_amount_minor, operation_attempt

-- name: clear_pending
-- The PSP refused or never received the pending capture or void: the payment stays AUTHORIZED.
UPDATE payment.payments
SET pending_operation = NULL, pending_order_id = NULL, pending_amount_minor = NULL, next_reconcile_at = NULL,
    updated_at = now()
WHERE payment_id = %(payment_id)s
RETURNING *

-- name: mark_captured
-- AUTHORIZED -> CAPTURED for the pending order and amount, and its event, returned with its details; no row
-- when nothing is pending.
WITH p AS (
    UPDATE payment.payments
    SET status = 'captured', captured_minor = pending_amount_minor, order_id = pending_order_id,
        captured_at = now(), pending_operation = NULL, pending_order_id = NULL, pending_amount_minor = NULL,
        next_reconcile_at = NULL, updated_at = now()
    WHERE payment_id = %(payment_id)s AND pending_operation = 'capture'
    RETURNING *
), e AS (
    INSERT INTO payment.payment_events (payment_id, from_status, to_status, cause, psp_response)
    SELECT payment_id, 'authorized', 'captured', %(cause)s, %(psp_response)s FROM p
    RETURNING event_id, from_status, to_status, cause, created_at
)
-- with the history (this statement's event included: the snapshot does not see it) and refunds
SELECT p.*,
    (SELECT coalesce(json_agg(json_build_object(
         'from_status', h.from_status, 'to_status', h.to_status, 'cause', h.cause, 'created_at', h.created_at)
         ORDER BY h.event_id), '[]')
     FROM (SELECT event_id, from_status, to_status, cause, created_at FROM payment.payment_events
           WHERE payment_id = %(payment_id)s
           UNION ALL SELECT event_id, from_status, to_status, cause, created_at FROM e) AS h) AS history,
    (SELECT coalesce(json_agg(json_build_object(
         'refund_id', refund_id, 'payment_id', payment_id, 'idempotency_key', idempotency_key,
         'request_fingerprint', encode(request_fingerprint, 'hex'), 'amount_minor', amount_minor, 'reason', reason,
         'note', note, 'status', status, 'psp_reference', psp_reference, 'created_at', created_at,
         'completed_at', completed_at) ORDER BY created_at, refund_id), '[]')
     FROM payment.refunds WHERE payment_id = %(payment_id)s) AS refunds
FROM p

-- name: mark_voided
-- AUTHORIZED -> VOIDED, and its event; no row when no void is pending.
WITH p AS (
    UPDATE payment.payments
    SET status = 'voided', voided_at = now(), pending_operation = NULL, pending_order_id = NULL,
        pending_amount_minor = NULL, next_reconcile_at = NULL, updated_at = now()
    WHERE payment_id = %(payment_id)s AND pending_operation = 'void'
    RETURNING *
), e AS (
    INSERT INTO payment.payment_events (payment_id, from_status, to_status, cause, psp_response)
    SELECT payment_id, 'authorized', 'voided', %(cause)s, %(psp_response)s FROM p
)
SELECT * FROM p

-- name: mark_expired
-- AUTHORIZED -> EXPIRED: the PSP no longer holds the funds.
UPDATE payment.payments
SET status = 'expired', expired_at = now(), pending_operation = NULL, pending_order_id = NULL,
    pending_amount_minor = NULL, next_reconcile_at = NULL, updated_at = now()
WHERE payment_id = %(payment_id)s
RETURNING *

-- name: add_refunded
-- A refund succeeded: adds it to the payment's refunded total and moves its state.
UPDATE payment.payments
SET refunded_minor = refunded_minor + %(amount_minor)s, status = %(status)s, updated_at = now()
WHERE payment_id = %(payment_id)s
RETURNING *

-- name: refund_by_key
-- The refund RefundPayment created for a payment and idempotency key.
SELECT * FROM payment.refunds WHERE payment_id = %(payment_id)s AND idempotency_key = %(idempotency_key)s

-- name: lock_refund
-- One refund, locked for its settlement.
SELECT * FROM payment.refunds WHERE refund_id = %(refund_id)s FOR UPDATE

-- name: refunds_in_flight
-- Sum of the payment's refunds still at the PSP (they count against what is refundable).
SELECT coalesce(sum(amount_minor), 0)::bigint AS total FROM payment.refunds
WHERE payment_id = %(payment_id)s AND status = 'processing'

-- name: insert_refund
-- Records a refund about to be sent to the PSP.
INSERT INTO payment.refunds (refund_id, payment_id, idempotency_key, request_fingerprint, amount_minor, reason, note,
                             status, next_reconcile_at)
VALUES (%(refund_id)s, %(payment_id)s, %(idempotency_key)s, %(fingerprint)s, %(amount_minor)s, %(reason)s, %(note)s,
        'processing', now() + make_interval(secs => %(grace_seconds)s))
RETURNING *

-- name: settle_refund
-- PROCESSING -> SUCCEEDED or FAILED.
UPDATE payment.refunds
SET status = %(status)s, psp_reference = %(psp_reference)s, completed_at = now(), next_reconcile_at = NULL
WHERE refund_id = %(refund_id)s
RETURNING *

-- name: details_of
-- A payment's refunds (oldest first) and state changes (in order), in one round trip.
SELECT
    (SELECT coalesce(json_agg(json_build_object(
         'refund_id', refund_id, 'payment_id', payment_id, 'idempotency_key', idempotency_key,
         'request_fingerprint', encode(request_fingerprint, 'hex'), 'amount_minor', amount_minor, 'reason', reason,
         'note', note, 'status', status, 'psp_reference', psp_reference, 'created_at', created_at,
         'completed_at', completed_at) ORDER BY created_at, refund_id), '[]')
     FROM payment.refunds WHERE payment_id = %(payment_id)s) AS refunds,
    (SELECT coalesce(json_agg(json_build_object(
         'from_status', from_status, 'to_status', to_status, 'cause', cause, 'created_at', created_at)
         ORDER BY event_id), '[]')
     FROM payment.payment_events WHERE payment_id = %(payment_id)s) AS history

-- name: list_payments
-- A page of a checkout's payments, oldest first, after a (created_at, payment_id) position.
SELECT * FROM payment.payments
WHERE checkout_id = %(checkout_id)s
  AND (%(after_created)s::timestamptz IS NULL OR (created_at, payment_id) > (%(after_created)s, %(after_id)s))
ORDER BY created_at, payment_id
LIMIT %(limit)s

-- name: claim_unsettled_payments
-- The reconciler's claim: due payments whose authorization, capture or void outcome is unknown; leased so
-- other replicas skip them.
UPDATE payment.payments SET next_reconcile_at = now() + make_interval(secs => %(lease_seconds)s)
WHERE payment_id IN (
    SELECT payment_id FROM payment.payments
    WHERE (status IN ('pending', 'processing') OR pending_operation IS NOT NULL) AND next_reconcile_at <= now()
    ORDER BY next_reconcile_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING *

-- name: claim_unsettled_refunds
-- The reconciler's claim of due refunds whose outcome is unknown.
UPDATE payment.refunds SET next_reconcile_at = now() + make_interval(secs => %(lease_seconds)s)
WHERE refund_id IN (
    SELECT refund_id FROM payment.refunds
    WHERE status = 'processing' AND next_reconcile_at <= now()
    ORDER BY next_reconcile_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING *

-- name: lapsed_authorizations
-- Authorizations past their expiry with nothing pending, locked (skipping those another replica holds).
SELECT * FROM payment.payments
WHERE status = 'authorized' AND pending_operation IS NULL AND authorization_expires_at <= now()
ORDER BY authorization_expires_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
