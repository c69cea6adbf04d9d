"""Images: the layer store and the tar reader it uses, images and references (``store.py`` owns the
image tables), load, save and import. Every layer is untrusted input and goes through ``tarfmt``."""
