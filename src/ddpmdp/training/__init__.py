"""Training small DDPMs (L_simple, L_hybrid, L_vlb) with EMA, bit-exact resume and model cards."""
