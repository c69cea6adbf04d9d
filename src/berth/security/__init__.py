"""Who is calling and what they may do: identity, the PKI, TLS material, the actions catalogue, the
Cedar policy, AuthZ plugins and the audit log."""
