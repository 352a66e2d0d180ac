"""Offline reinforcement learning: discrete, language-conditioned IQL (`rgvlm_core.rl.iql`)."""
