"""The edges: the only modules of `app` that touch Kafka, Faust or Redis."""
