"""The activation gateway: gRPC northbound, engine, journal, rendering and inventory."""
