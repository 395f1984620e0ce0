"""Hardware tests: run on a machine with an NVIDIA GPU (see README.md); not part of `make test`."""
