-- What building the service against a real PSP added to 0001:
--
-- * EXPIRED: an authorization the PSP no longer holds (AUTHORIZED -> EXPIRED), and it frees the
--   checkout for another payment like FAILED and VOIDED do.
-- * The payment method from the PSP's answer (card brand, last four, expiry, funding; never a number).
-- * A capture or void sent to the PSP is recorded before the call (pending_operation) so its outcome,
--   if lost, is settled by the reconciler; partial captures record their amount and key.
-- * next_reconcile_at: the reconciler's lease; replicas claim due rows with FOR UPDATE SKIP LOCKED and
--   push this forward, so one replica looks an operation up at a time.
-- * Every event keeps the PSP's answer that caused it (psp_response).
-- * authorization_cancellations: VoidPayment by checkout and key before any payment exists, so a late
--   AuthorizePayment with that key is refused (inventory's release-before-reserve marker, for money).

ALTER TABLE payment.payments DROP CONSTRAINT payments_status_check;
ALTER TABLE payment.payments ADD CONSTRAINT payments_status_check CHECK (status IN ('pending', 'processing',
    'authorized', 'captured', 'voided', 'partially_refunded', 'refunded', 'failed', 'expired'));

ALTER TABLE payment.payments
    ADD COLUMN method_type text CHECK (method_type IN ('card')),
    ADD COLUMN card_brand text NOT NULL DEFAULT '' CHECK (char_length(card_brand) <= 32),
    ADD COLUMN card_last4 text NOT NULL DEFAULT '' CHECK (card_last4 ~ '^([0-9]{4})?$'),
    ADD COLUMN card_exp_month integer NOT NULL DEFAULT 0 CHECK (card_exp_month BETWEEN 0 AND 12),
    ADD COLUMN card_exp_year integer NOT NULL DEFAULT 0 CHECK (card_exp_year BETWEEN 0 AND 9999),
    ADD COLUMN card_funding text NOT NULL DEFAULT '' CHECK (char_length(card_funding) <= 16),
    ADD COLUMN pending_operation text CHECK (pending_operation IN ('capture', 'void')),
    ADD COLUMN pending_order_id text CHECK (pending_order_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    ADD COLUMN pending_amount_minor bigint CHECK (pending_amount_minor > 0),
    ADD COLUMN capture_idempotency_key text CHECK (capture_idempotency_key ~ '^[A-Za-z0-9._:-]{1,128}$'),
    ADD COLUMN capture_fingerprint bytea CHECK (octet_length(capture_fingerprint) = 32),
    ADD COLUMN expired_at timestamptz,
    ADD COLUMN next_reconcile_at timestamptz,
    ADD CONSTRAINT pending_only_while_authorized CHECK (
        pending_operation IS NULL OR (status = 'authorized' AND next_reconcile_at IS NOT NULL)),
    ADD CONSTRAINT pending_capture_names_order CHECK (
        (pending_operation = 'capture') = (pending_order_id IS NOT NULL AND pending_amount_minor IS NOT NULL)),
    ADD CONSTRAINT expired_has_time CHECK ((status = 'expired') = (expired_at IS NOT NULL));

DROP INDEX payment.payments_one_live_per_checkout;
CREATE UNIQUE INDEX payments_one_live_per_checkout ON payment.payments (checkout_id)
    WHERE status NOT IN ('failed', 'voided', 'expired');
DROP INDEX payment.payments_unsettled;
CREATE INDEX payments_to_reconcile ON payment.payments (next_reconcile_at)
    WHERE status IN ('pending', 'processing') OR pending_operation IS NOT NULL;
CREATE INDEX payments_to_expire ON payment.payments (authorization_expires_at) WHERE status = 'authorized';

ALTER TABLE payment.refunds ADD COLUMN next_reconcile_at timestamptz;
DROP INDEX payment.refunds_unsettled;
CREATE INDEX refunds_to_reconcile ON payment.refunds (next_reconcile_at) WHERE status = 'processing';

ALTER TABLE payment.payment_events ADD COLUMN psp_response jsonb;
ALTER TABLE payment.payment_events DROP CONSTRAINT edge_of_the_state_machine;
ALTER TABLE payment.payment_events ADD CONSTRAINT edge_of_the_state_machine CHECK (
    (from_status IS NULL AND to_status = 'pending')
    OR (from_status, to_status) IN (
        ('pending', 'processing'),
        ('processing', 'authorized'), ('processing', 'failed'),
        ('authorized', 'captured'), ('authorized', 'voided'), ('authorized', 'expired'),
        ('captured', 'partially_refunded'), ('captured', 'refunded'),
        ('partially_refunded', 'partially_refunded'), ('partially_refunded', 'refunded')
    )
);

CREATE TABLE payment.authorization_cancellations (
    checkout_id      text NOT NULL CHECK (checkout_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    idempotency_key  text NOT NULL CHECK (idempotency_key ~ '^[A-Za-z0-9._:-]{1,128}$'),
    reason           text NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 200),
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (checkout_id, idempotency_key)
);
