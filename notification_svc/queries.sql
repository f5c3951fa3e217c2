-- name: record_batch
-- A consumed batch in one statement (so one transaction and one round trip): records each event in the
-- inbox once and, for the events new to it, inserts the notification rendered from it, PENDING its first
-- attempt. Events already in the inbox (redeliveries) add nothing. The batch is one JSON array of objects
-- (the event's bytes in base64); an event that sends nothing has no notification_id. Returns the
-- notifications inserted.
WITH batch AS (
    SELECT *
    FROM jsonb_to_recordset(%(batch)s::jsonb) AS b(
        event_id text, order_id text, checkout_id text, sequence bigint, event_type text, entry_id text,
        payload text, notification_id text, user_id text, channel text, template text, recipient text,
        subject text, body text)
), inbox AS (
    INSERT INTO notification.processed_events (event_id, order_id, checkout_id, sequence, event_type,
                                               stream_entry_id, payload)
    SELECT event_id, order_id, checkout_id, sequence, event_type, entry_id, decode(payload, 'base64')
    FROM batch
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
)
INSERT INTO notification.notifications (notification_id, event_id, user_id, order_id, checkout_id, channel, template,
                                        recipient, subject, body)
SELECT b.notification_id, b.event_id, b.user_id, b.order_id, b.checkout_id, b.channel, b.template, b.recipient,
       b.subject, b.body
FROM batch AS b JOIN inbox USING (event_id)
WHERE b.notification_id IS NOT NULL
ON CONFLICT DO NOTHING
RETURNING notification_id, created_at

-- name: mark_sent
-- Send attempts that succeeded.
UPDATE notification.notifications
SET status = 'sent', attempts = attempts + 1, sent_at = now(), updated_at = now(), next_attempt_at = NULL
WHERE notification_id = ANY(%(notification_ids)s) AND status IN ('pending', 'failed')

-- name: renew_pending
-- Recorded notifications still waiting for their first send (behind a slow batch): their lease moves forward,
-- so the retry worker does not take them for abandoned and send them too.
UPDATE notification.notifications SET updated_at = now()
WHERE notification_id = ANY(%(notification_ids)s) AND status = 'pending'

-- name: mark_failed
-- A send attempt failed and another is due later.
UPDATE notification.notifications
SET status = 'failed', attempts = attempts + 1, last_error = left(%(error)s, 1000), updated_at = now(),
    next_attempt_at = now() + make_interval(secs => %(delay_seconds)s)
WHERE notification_id = %(notification_id)s AND status IN ('pending', 'failed')
RETURNING *

-- name: mark_dead_lettered
-- The last allowed attempt failed.
UPDATE notification.notifications
SET status = 'dead_lettered', attempts = attempts + 1, last_error = left(%(error)s, 1000), updated_at = now(),
    next_attempt_at = NULL, dead_lettered_at = now()
WHERE notification_id = %(notification_id)s AND status IN ('pending', 'failed')
RETURNING *

-- name: event_payload
-- The original bytes of an event, for the dead-letter topic.
SELECT payload, event_type FROM notification.processed_events WHERE event_id = %(event_id)s

-- name: claim_due
-- The retry worker's batch: FAILED notifications whose next attempt is due, and PENDING ones whose first
-- attempt was never made; skips rows another worker holds, and leases them (next_attempt_at / updated_at
-- move forward) so a worker that dies mid-send leaves them to be claimed again.
UPDATE notification.notifications n
SET updated_at = now(),
    next_attempt_at = CASE WHEN n.status = 'failed' THEN now() + make_interval(secs => %(lease_seconds)s) END
WHERE n.notification_id IN (
    SELECT notification_id FROM notification.notifications
    WHERE (status = 'failed' AND next_attempt_at <= now())
       OR (status = 'pending' AND updated_at < now() - make_interval(secs => %(lease_seconds)s))
    ORDER BY updated_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED)
RETURNING *

-- name: list_notifications
-- One user's or one order's notifications (of that user, unless the caller is trusted), newest first,
-- after a (created_at, notification_id) position.
SELECT * FROM notification.notifications
WHERE (%(user_id)s::text IS NULL OR user_id = %(user_id)s)
  AND (%(order_id)s::text IS NULL OR order_id = %(order_id)s)
  AND (%(after_time)s::timestamptz IS NULL OR (created_at, notification_id) < (%(after_time)s::timestamptz, %(after_id)s))
ORDER BY created_at DESC, notification_id DESC
LIMIT %(limit)s
