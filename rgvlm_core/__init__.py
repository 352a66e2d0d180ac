"""RG-VLM Studio core: data, store, labelling and learning, shared by the dashboard and the CLI.

This package never imports streamlit or typer; heavy dependencies (torch, transformers) are
imported lazily inside the functions that need them, so the dashboard process stays light.
"""

__version__ = "0.1.0"
