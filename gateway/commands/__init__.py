"""Sub-commands of the `sauti` CLI that belong to one capability each (nlu, sandbox, …)."""
