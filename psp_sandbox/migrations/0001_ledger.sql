-- The sandbox PSP's ledger: authorizations, refunds, and every idempotent operation with its answer.

CREATE TABLE psp_sandbox.authorizations (
    authorization_id  text PRIMARY KEY,
    token             text NOT NULL,
    currency_code     char(3) NOT NULL,
    amount_minor      bigint NOT NULL CHECK (amount_minor > 0),
    captured_minor    bigint NOT NULL DEFAULT 0,
    refunded_minor    bigint NOT NULL DEFAULT 0,
    status            text NOT NULL CHECK (status IN ('authorized', 'captured', 'voided', 'expired')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL,
    CONSTRAINT captured_within_authorized CHECK (captured_minor BETWEEN 0 AND amount_minor),
    CONSTRAINT refunded_within_captured CHECK (refunded_minor BETWEEN 0 AND captured_minor)
);

CREATE TABLE psp_sandbox.refunds (
    refund_id         text PRIMARY KEY,
    authorization_id  text NOT NULL REFERENCES psp_sandbox.authorizations (authorization_id),
    amount_minor      bigint NOT NULL CHECK (amount_minor > 0),
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- One row per Idempotency-Key: 'in_progress' while the first request runs, then its answer;
-- 'fenced' keys were closed by a client that gave up on them (a late request with one is refused).
CREATE TABLE psp_sandbox.operations (
    operation_id      text PRIMARY KEY,
    idempotency_key   text NOT NULL UNIQUE,
    kind              text NOT NULL CHECK (kind IN ('authorize', 'capture', 'void', 'refund', 'fence')),
    request_hash      text NOT NULL,
    state             text NOT NULL CHECK (state IN ('in_progress', 'done', 'fenced')),
    http_status       integer,
    response          jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    completed_at      timestamptz
);
