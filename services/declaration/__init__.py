"""The caregiver declaration (mantelzorgverklaring)."""
