"""Sauti's NLU training data in Rasa 3 YAML (a package only so that the files ship with it)."""
