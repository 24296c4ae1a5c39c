"""HTTP edges to the money providers: M-Pesa Daraja, Wave, and Africa's Talking SMS.

Each client owns one HTTP session, sets explicit timeouts, returns frozen dataclasses and raises the
typed errors of `payments.providers.errors`. Nothing here touches the database: the orchestrator
decides what a provider answer means for the ledger.
"""
