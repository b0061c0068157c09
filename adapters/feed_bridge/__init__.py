"""The feed bridge: Alpaca's market-data and trade-update streams to the desk's Event Hubs
(``python -m adapters.feed_bridge``)."""
