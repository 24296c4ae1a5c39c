"""Conversations: USSD journeys, voice confirmation, screens within USSD limits, language catalogs,
session state and its stores. Speaks neither HTTP nor SQL."""
