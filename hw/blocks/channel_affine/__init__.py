"""The per-channel affine unit (requantisation, classifier logits)."""
