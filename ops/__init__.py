"""Operator commands: start the platform, declare the broker topology, import reference
data, seed the demo, list and replay dead letters. They reach the services over RabbitMQ
only, like any other client."""
