"""RG-VLM Studio dashboard: `streamlit run app.py` (or `rgvlm app`).

Only navigation lives here (rgvlm_app/nav.py lists the pages); each page is a file in pages/. The app
process never imports torch: long work (labelling, training) runs as CLI jobs.
"""

from rgvlm_app.nav import run_app

run_app()
