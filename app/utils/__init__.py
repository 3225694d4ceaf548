"""Small helpers that know nothing of Flask, the database or the shop."""
