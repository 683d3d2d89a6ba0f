"""placeholder: reader under construction."""
