"""Dashboard helpers: session state, cached store access and reusable widgets.

Pages import from here and from rgvlm_core; nothing here imports torch or transformers.
"""
