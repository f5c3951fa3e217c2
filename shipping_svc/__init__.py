"""Shipping service: address validation, shipping options and quotes from a rate table, and one shipment per order."""
