"""Containers: the typed model and its state machine (``model.py``, ``state.py``), the registry of
containers with their files and locks, the create-time checks, the OCI spec built whole
(``spec.py``), the rootfs, exits and restarts (``monitor.py``), healthchecks, exec, logs and a
container's files. Imports no other domain: networking comes in through ``networking.Networking``,
images' layers and volumes' directories as callables; ``daemon/backends/lifecycle.py`` ties them."""
