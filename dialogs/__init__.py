"""Conversations: USSD journeys (as data: `screens`, `journey`, `customer_journeys`), the engine that
runs them hop by hop (`engine`), screens within USSD limits (`render`, `gsm7`), language catalogs
(`catalog`, `catalogs/*.yml`), session state and its stores (`session`, `session_store`). Speaks no
HTTP; its only SQL is the USSD channel's own table (`session_outcomes`): money, users and PINs go
through `payments`."""
