"""net/: the parts of the network stack the model's workloads go through."""
