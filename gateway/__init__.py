"""The edge: the aiohttp app factory, HTTP handlers, the `sauti` CLI, settings and the wiring of
resources. Holds no business rules: it translates protocols into calls on dialogs/ and payments/."""
