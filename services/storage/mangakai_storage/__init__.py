"""Blob storage on local disk or S3, with signed URLs."""
