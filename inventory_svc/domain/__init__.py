"""Inventory's business rules, free of I/O, in four modules:

- `model`: the catalogue and stock figures, reservations and their states, the stock ledger's entries,
  and the limits (the stock cap, line and quantity limits) written once.
- `commands`: one dataclass per use case, as the servicer builds them from requests.
- `rules`: what a valid command is, and what each reservation state allows (decisions, no writes).
- `refusals`: the errors the service answers with, each with its stable ErrorInfo reason.

Stock figures: `stock_on_hand` counts units in the warehouse (sold units excluded), `reserved` counts
units held by active reservations, and `available = stock_on_hand - reserved` is what a new
reservation may take. A reservation belongs to one checkout and moves once out of ACTIVE:

    ACTIVE ──confirm──▶ CONFIRMED        (stock_on_hand and reserved both drop)
       │──release──▶ RELEASED            (reserved drops)
       └──expiry───▶ EXPIRED             (reserved drops; by the sweeper or by the next call that sees it)

**The reserve rule itself lives in SQL** (`queries.sql`: `reserve_all_or_nothing`), not here: "take
every line only if `stock_on_hand - reserved >= quantity` holds for each, on the row's latest
version" is one statement, so the hot product rows stay locked only while PostgreSQL runs it. A
version that read availability into Python, decided here, and wrote back held those row locks across
client round trips and made 47 reservations/s of one hot SKU where the single statement makes over
500 (`python -m bench reserve-hot-sku`, 32 clients; docs/design.md). The same statement decides a
batch of concurrent requests at once, each on its own (`inventory_svc.reserve_batcher`: the hot row
is then locked and committed once per batch). What stays here for reserves is what needs no lock:
validation, replay checks, and explaining a refusal (`rules.shortages`).
"""
