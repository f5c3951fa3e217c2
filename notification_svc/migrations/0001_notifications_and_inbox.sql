-- Notifications sent to customers about their orders, and the inbox of order events already handled.
--
-- Fixes over the seed design: the seed named a Notification Service ("sends confirmations") but gave
-- it no tables, and its events went through Kafka with nothing said about duplicates. Delivery from
-- the Redis stream is at least once, so processed_events is an inbox keyed by the event's id: an
-- event is handled in the transaction that inserts its row, and a redelivery finds the row and only
-- acknowledges. A notification is unique per (event, channel), its status and channel are CHECKed
-- lists whose columns agree with them (a sent one has a send time, a failed one a next attempt, an
-- e-mail a recipient), and ids are text with a CHECKed pattern, timestamps timestamptz NOT NULL.

CREATE TABLE notification.processed_events (
    event_id         text PRIMARY KEY CHECK (event_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    order_id         text NOT NULL CHECK (order_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    sequence         bigint NOT NULL CHECK (sequence >= 1),
    event_type       text NOT NULL CHECK (event_type IN
                         ('OrderCreated', 'OrderConfirmed', 'OrderCancelled', 'OrderShipped', 'OrderDelivered')),
    -- The Redis stream entry the event arrived in (e.g. "1718000000000-0").
    stream_entry_id  text NOT NULL CHECK (stream_entry_id ~ '^[0-9]+-[0-9]+$'),
    processed_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX processed_events_by_order ON notification.processed_events (order_id, sequence);

CREATE TABLE notification.notifications (
    notification_id  text PRIMARY KEY CHECK (notification_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    event_id         text NOT NULL REFERENCES notification.processed_events (event_id),
    user_id          text NOT NULL CHECK (user_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    order_id         text NOT NULL CHECK (order_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    channel          text NOT NULL CHECK (channel IN ('email', 'log')),
    template         text NOT NULL CHECK (template ~ '^[a-z][a-z0-9_]{0,63}$'),
    -- An e-mail address for the email channel; empty for the log.
    recipient        text NOT NULL DEFAULT '' CHECK (char_length(recipient) <= 254),
    subject          text NOT NULL CHECK (char_length(subject) BETWEEN 1 AND 200),
    -- Rendered once, so every retry sends the same message.
    body             text NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed', 'dead_lettered')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts BETWEEN 0 AND 20),
    last_error       text NOT NULL DEFAULT '' CHECK (char_length(last_error) <= 1000),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    next_attempt_at  timestamptz,
    CONSTRAINT one_per_event_and_channel UNIQUE (event_id, channel),
    CONSTRAINT email_has_recipient CHECK ((channel = 'email') = (recipient <> '')),
    CONSTRAINT sent_has_time CHECK ((status = 'sent') = (sent_at IS NOT NULL)),
    CONSTRAINT failed_has_next_attempt CHECK ((status = 'failed') = (next_attempt_at IS NOT NULL)),
    CONSTRAINT attempted_before_failing CHECK (status NOT IN ('sent', 'failed', 'dead_lettered') OR attempts >= 1)
);

CREATE INDEX notifications_by_user ON notification.notifications (user_id, created_at DESC, notification_id DESC);
CREATE INDEX notifications_by_order ON notification.notifications (order_id, created_at DESC, notification_id DESC);
-- The retry queue.
CREATE INDEX notifications_due ON notification.notifications (next_attempt_at) WHERE status = 'failed';
