"""Cooperative shortage market: entities, decision guidance, clearing, payments, operation."""
