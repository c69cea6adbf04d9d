"""docker build: the Dockerfile language, the build context and .dockerignore (no I/O of images or containers)."""
