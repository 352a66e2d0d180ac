"""RG-VLM Studio dashboard: `streamlit run app.py` (or `rgvlm app`).

Only navigation lives here; each page is a file in pages/. The app process never imports torch:
long work (labelling, training) runs as CLI jobs.
"""

import streamlit as st

st.set_page_config(page_title="RG-VLM Studio", page_icon=":material/insights:", layout="wide")

pages = [
    st.Page("pages/home.py", title="Overview", icon=":material/home:", default=True),
]
st.navigation(pages).run()
