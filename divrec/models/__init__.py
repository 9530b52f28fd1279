"""Language-model encoders for the two-tower recommender.

``encoder.TextEncoder`` (backbone + pooling + head), ``pretrained`` (offline model
resolution, pinned-weight checks), ``embed_cache`` (batched inference and cached frozen
embeddings), ``tiny`` (a tiny random BERT for tests).
"""
