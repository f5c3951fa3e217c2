"""Notification service: turns order events into customer messages, exactly once per event and channel,
and lists what was sent."""
