"""Extraction: align words to word pieces, run the encoder, convert maps to word level."""
