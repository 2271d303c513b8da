"""The collector: Binance websocket frames into crash-safe append-only JSONL segments (see ``service.py``)."""
