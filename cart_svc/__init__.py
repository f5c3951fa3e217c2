"""Cart service: shoppers' carts, held in Redis while active and recorded in PostgreSQL once converted,
merged or abandoned."""
