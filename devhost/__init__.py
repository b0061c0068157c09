"""devhost: a local host for the unchanged Functions app (not a production host)."""
