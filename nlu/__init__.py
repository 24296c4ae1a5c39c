"""Language: text to intent and entities, number words, contact matching, speech to text.
Imports none of Sauti's other packages."""
