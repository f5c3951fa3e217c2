-- Each capture or void sent to the PSP is numbered, and the number is part of its Idempotency-Key
-- (<payment_id>:capture:<n>). The reconciler fences the key of one the PSP never received; without the
-- number the next capture of that payment would reuse the fenced key and be refused for ever.
ALTER TABLE payment.payments ADD COLUMN operation_attempt integer NOT NULL DEFAULT 0
    CHECK (operation_attempt >= 0);
