-- How an operator resolved a FAILED checkout (CheckoutAdminService.ResolveCheckout); the checkout stays
-- FAILED, and these say what was done, why, by whom and when.
ALTER TABLE checkout.checkouts
    ADD COLUMN resolution_action  text CHECK (resolution_action IN ('order_cancelled', 'payment_voided_stock_released')),
    ADD COLUMN resolution_reason  text CHECK (char_length(resolution_reason) BETWEEN 1 AND 500),
    ADD COLUMN resolved_by        text CHECK (char_length(resolved_by) BETWEEN 1 AND 128),
    ADD COLUMN resolved_at        timestamptz,
    ADD CONSTRAINT resolution_is_whole CHECK (
        (resolution_action IS NULL) = (resolution_reason IS NULL)
        AND (resolution_action IS NULL) = (resolved_by IS NULL)
        AND (resolution_action IS NULL) = (resolved_at IS NULL)),
    ADD CONSTRAINT only_failed_is_resolved CHECK (resolution_action IS NULL OR status = 'failed');
