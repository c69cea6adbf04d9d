"""Who is calling (identity), and the PKI that secures the TCP listener."""
