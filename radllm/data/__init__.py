"""Tokenized WebDataset shards: the sample schema, the shard writer and the streaming reader."""
