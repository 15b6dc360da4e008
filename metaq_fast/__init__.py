"""metaq_fast: a high-throughput, MetaQ-compatible distributed message broker."""

__version__ = "0.1.0"
