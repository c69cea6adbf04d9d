"""Networks: the controller (``controller.py``, in the manner of libnetwork's), a running container's
sandbox (namespace, endpoints, ports, /etc/hosts), IPAM, drivers (every netlink call), published
ports and the nftables picture, the embedded DNS. Imports no other domain: containers come in
through ``model.Members``."""
