-- An operator's retry (CheckoutAdminService.RetryCheckout) gives the failed step a fresh budget of
-- SAGA_STEP_MAX_ATTEMPTS calls: the calls made before it stay in `attempts` (what GetCheckout shows),
-- and the budget counts `attempts - attempts_before_retry`.
ALTER TABLE checkout.saga_steps
    ADD COLUMN attempts_before_retry integer NOT NULL DEFAULT 0,
    ADD CONSTRAINT retry_budget_within_attempts CHECK (attempts_before_retry BETWEEN 0 AND attempts);
