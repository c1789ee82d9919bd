"""The lab: containerlab-style topologies of real device daemons in network namespaces."""
