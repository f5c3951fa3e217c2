-- Payments, their refunds, and the append-only history of every state change.
--
-- Fixes over the seed design: the amount was DECIMAL(10,2) with a USD default; here it is bigint
-- minor units with a CHECKed char(3) currency, and captured and refunded amounts are columns CHECKed
-- against it (refunded <= captured <= amount). The seed kept "payment_method_details JSONB --
-- Encrypted card details" and the raw gateway response: card data never reaches this service (it
-- takes PSP tokens only), and no token is stored either; a request fingerprint (SHA-256) lets a
-- replay be compared with the first call. The seed's statuses ('succeeded', no authorize/capture
-- split, no void, no partial refund) become the contract's eight, CHECKed with the columns each
-- implies. Nothing stopped two live payments for one checkout or a retried request from charging
-- twice; here (checkout_id, idempotency_key) is unique and a checkout has at most one payment that is
-- not failed or voided. State changes were overwritten in place; here each is an append-only row of
-- payment_events whose (from, to) pair must be an edge of the state machine.

CREATE TABLE payment.payments (
    payment_id                text PRIMARY KEY CHECK (payment_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    checkout_id               text NOT NULL CHECK (checkout_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    idempotency_key           text NOT NULL CHECK (idempotency_key ~ '^[A-Za-z0-9._:-]{1,128}$'),
    -- SHA-256 of the AuthorizePayment request without its key (token included, so the token itself is never kept).
    request_fingerprint       bytea NOT NULL CHECK (octet_length(request_fingerprint) = 32),
    status                    text NOT NULL CHECK (status IN ('pending', 'processing', 'authorized', 'captured',
                                                              'voided', 'partially_refunded', 'refunded', 'failed')),
    currency_code             char(3) NOT NULL CHECK (currency_code ~ '^[A-Z]{3}$'),
    amount_minor              bigint NOT NULL CHECK (amount_minor BETWEEN 1 AND 100000000000),
    captured_minor            bigint NOT NULL DEFAULT 0,
    -- Sum of succeeded refunds.
    refunded_minor            bigint NOT NULL DEFAULT 0,
    order_id                  text CHECK (order_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    psp_reference             text CHECK (char_length(psp_reference) BETWEEN 1 AND 128),
    failure_reason            text CHECK (failure_reason IN ('card_declined', 'insufficient_funds', 'card_expired',
                                  'incorrect_cvc', 'fraud_suspected', 'invalid_payment_token',
                                  'amount_limit_exceeded', 'processor_declined')),
    psp_decline_code          text NOT NULL DEFAULT '' CHECK (char_length(psp_decline_code) <= 64),
    failure_message           text NOT NULL DEFAULT '' CHECK (char_length(failure_message) <= 500),
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    authorized_at             timestamptz,
    authorization_expires_at  timestamptz,
    captured_at               timestamptz,
    voided_at                 timestamptz,
    CONSTRAINT refunded_within_captured
        CHECK (captured_minor BETWEEN 0 AND amount_minor AND refunded_minor BETWEEN 0 AND captured_minor),
    CONSTRAINT failed_has_reason CHECK ((status = 'failed') = (failure_reason IS NOT NULL)),
    CONSTRAINT authorized_has_psp_reference CHECK (
        status NOT IN ('authorized', 'captured', 'voided', 'partially_refunded', 'refunded')
        OR (psp_reference IS NOT NULL AND authorized_at IS NOT NULL)
    ),
    CONSTRAINT captured_names_order CHECK (
        (status IN ('captured', 'partially_refunded', 'refunded'))
        = (captured_at IS NOT NULL AND order_id IS NOT NULL AND captured_minor > 0)
    ),
    CONSTRAINT refunds_match_status CHECK (
        CASE status
            WHEN 'captured' THEN refunded_minor = 0
            WHEN 'partially_refunded' THEN refunded_minor > 0 AND refunded_minor < captured_minor
            WHEN 'refunded' THEN refunded_minor = captured_minor
            ELSE refunded_minor = 0
        END
    ),
    CONSTRAINT voided_has_time CHECK ((status = 'voided') = (voided_at IS NOT NULL)),
    CONSTRAINT one_payment_per_key UNIQUE (checkout_id, idempotency_key)
);

-- A checkout may retry with another card, but holds at most one payment that is not failed or voided.
CREATE UNIQUE INDEX payments_one_live_per_checkout ON payment.payments (checkout_id)
    WHERE status NOT IN ('failed', 'voided');
CREATE INDEX payments_by_checkout ON payment.payments (checkout_id, created_at);
-- The reconciler's queue: payments sent to the PSP whose outcome is not known.
CREATE INDEX payments_unsettled ON payment.payments (updated_at) WHERE status IN ('pending', 'processing');
CREATE UNIQUE INDEX payments_by_psp_reference ON payment.payments (psp_reference) WHERE psp_reference IS NOT NULL;

CREATE TABLE payment.refunds (
    refund_id            text PRIMARY KEY CHECK (refund_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    payment_id           text NOT NULL REFERENCES payment.payments (payment_id),
    idempotency_key      text NOT NULL CHECK (idempotency_key ~ '^[A-Za-z0-9._:-]{1,128}$'),
    request_fingerprint  bytea NOT NULL CHECK (octet_length(request_fingerprint) = 32),
    amount_minor         bigint NOT NULL CHECK (amount_minor BETWEEN 1 AND 100000000000),
    reason               text NOT NULL CHECK (reason IN ('customer_request', 'order_cancelled', 'duplicate', 'fraudulent', 'other')),
    note                 text NOT NULL DEFAULT '' CHECK (char_length(note) <= 500),
    status               text NOT NULL CHECK (status IN ('processing', 'succeeded', 'failed')),
    psp_reference        text CHECK (char_length(psp_reference) BETWEEN 1 AND 128),
    created_at           timestamptz NOT NULL DEFAULT now(),
    completed_at         timestamptz,
    CONSTRAINT completed_has_time CHECK ((status IN ('succeeded', 'failed')) = (completed_at IS NOT NULL)),
    CONSTRAINT succeeded_has_psp_reference CHECK (status <> 'succeeded' OR psp_reference IS NOT NULL),
    CONSTRAINT one_refund_per_key UNIQUE (payment_id, idempotency_key)
);

CREATE INDEX refunds_by_payment ON payment.refunds (payment_id, created_at);
CREATE INDEX refunds_unsettled ON payment.refunds (created_at) WHERE status = 'processing';

-- Append-only history: one row per state change, in order; never updated or deleted.
CREATE TABLE payment.payment_events (
    event_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payment_id   text NOT NULL REFERENCES payment.payments (payment_id),
    -- NULL for the first row, which records the payment as pending.
    from_status  text,
    to_status    text NOT NULL,
    -- What caused it, e.g. "authorize", "reconciler", "refund:<refund_id>".
    cause        text NOT NULL CHECK (char_length(cause) BETWEEN 1 AND 200),
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT edge_of_the_state_machine CHECK (
        (from_status IS NULL AND to_status = 'pending')
        OR (from_status, to_status) IN (
            ('pending', 'processing'),
            ('processing', 'authorized'), ('processing', 'failed'),
            ('authorized', 'captured'), ('authorized', 'voided'),
            ('captured', 'partially_refunded'), ('captured', 'refunded'),
            ('partially_refunded', 'partially_refunded'), ('partially_refunded', 'refunded')
        )
    )
);

CREATE INDEX payment_events_by_payment ON payment.payment_events (payment_id, event_id);

CREATE FUNCTION payment.refuse_history_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'payment.payment_events is append-only';
END
$$;

CREATE TRIGGER payment_events_append_only BEFORE UPDATE OR DELETE ON payment.payment_events
    FOR EACH ROW EXECUTE FUNCTION payment.refuse_history_change();
CREATE TRIGGER payment_events_never_truncated BEFORE TRUNCATE ON payment.payment_events
    FOR EACH STATEMENT EXECUTE FUNCTION payment.refuse_history_change();
