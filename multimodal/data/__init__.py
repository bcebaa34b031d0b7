"""Data: sources, shard writing and checking, the training reader, and the offline corpora."""
