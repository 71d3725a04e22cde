"""The travel-cost fund (reiskostenfonds): claims and payouts."""
