"""Role-to-role messages and their JSON codecs."""
