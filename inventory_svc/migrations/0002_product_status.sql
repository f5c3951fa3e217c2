-- Products can leave the catalogue: DiscontinueProduct sets discontinued_at (one way). A discontinued
-- product stays readable (carts mark its lines unavailable) and can no longer be reserved.

ALTER TABLE inventory.products ADD COLUMN discontinued_at timestamptz;
