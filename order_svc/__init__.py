"""Order service: orders and their lifecycle, with every change published through a transactional outbox."""
