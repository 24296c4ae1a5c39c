"""Money and its movement: value types, the double-entry ledger, identities and PINs, fees, the
payment state machine, provider clients and sandboxes, the outbox worker. Knows nothing of USSD or voice."""
