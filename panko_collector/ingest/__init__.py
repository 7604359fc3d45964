"""The worker loop: deliveries in, batches written, acks after the commit."""
