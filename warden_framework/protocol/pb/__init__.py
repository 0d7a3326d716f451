"""Generated protobuf modules of the Warden wire messages (scripts/gen-proto.sh); never edit by hand."""
