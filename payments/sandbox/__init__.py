"""Local stand-ins for M-Pesa Daraja, Wave and Africa's Talking SMS.

Each is an aiohttp app speaking the same contract as the real provider (``shared/contracts/``), to
the field name, with the failure modes integrators meet in production, selectable per request by
phone-number suffix or through a small control API under ``/_sandbox/``. `runner.start_sandboxes`
runs all three in-process; ``sauti sandbox`` runs them alone.
"""
