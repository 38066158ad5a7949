"""The least a Streamlit page costs a browser: `bench/load.py --baselines` serves this script with the
app's own .streamlit/config.toml and visits `?w=text` (a title and a line) and `?w=chart` (the same and
one three-point plotly chart), to set the browser CPU of the app's pages beside Streamlit's own."""

import plotly.graph_objects as go
import streamlit as st

what = st.query_params.get("w", "text")
st.title("A blank page")
st.write("One line of text: what any Streamlit page costs a fresh browser tab.")
if what == "chart":
    st.plotly_chart(go.Figure(go.Scatter(x=[1, 2, 3], y=[1, 3, 2])), key="blank_chart")
