"""National registry of support points (steunpunten mantelzorg)."""
