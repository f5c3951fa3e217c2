"""Payment service: authorizes, captures, voids and refunds through a payment service provider, exactly
once, with tokens only."""
