"""The ASL engine: definitions, validation, the resumable interpreter and the local driver."""
