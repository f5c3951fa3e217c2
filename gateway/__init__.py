"""Checkout gateway: the public checkout API; it quotes a cart and places the order through a durable saga
over the other services."""
