"""MQTT edge: the telemetry contract and the MQTT <-> Kafka bridge (the only paho user)."""
