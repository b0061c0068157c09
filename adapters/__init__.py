"""The only code that imports vendor SDKs: broker, stores, Event Hubs, Blob Storage."""
