"""FID: the Fréchet distance, an FID-Inception-compatible network, and a labelled proxy classifier."""
