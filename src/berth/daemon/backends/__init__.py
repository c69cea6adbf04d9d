"""Adapters that implement the api's backend Protocols by calling the domain packages; the work that
spans domains (a container's life: ``lifecycle.py``) with its rollback; the container↔network link
(``links.py``). No SQL, netlink, namespaces or mounts here (an import-linter contract)."""
