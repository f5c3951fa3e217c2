"""Inventory service: the catalogue, stock on hand, and reservations that expire and never oversell."""
