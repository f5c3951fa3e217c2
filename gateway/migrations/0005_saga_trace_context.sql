-- The W3C traceparent of the PlaceOrder request that started a checkout's current attempt: a saga the
-- recovery worker resumes (its replica died) is traced as a new trace linked to it (docs/observability.md).
-- Never a secret: a trace id and a span id.
ALTER TABLE checkout.checkouts ADD COLUMN traceparent text NOT NULL DEFAULT '';
