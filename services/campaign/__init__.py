"""Information bags (informatietas) and the awareness campaign (#deeljezorg)."""
