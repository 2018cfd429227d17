"""Model: load a checkpoint, look at the curvature of its loss and at the spectra of its weights."""

import streamlit as st

from explorer.ui import entry, live, model_hessian, model_source, model_weights

entry.require_frame()  # run alone (a fresh server's legacy pages/ mode): app.py takes over

live.collect_finished(model_hessian.KEY)  # log analyses that ended since the last run of this page
live.collect_finished(model_weights.KEY)

st.title("Model")
st.caption("A trained network as a matrix-free eigenproblem: the loss Hessian (or Gauss-Newton matrix) over the "
           "parameters, applied through Hessian-vector products, and the singular values of its weights.")
inputs = model_source.source_section(disabled=live.is_running(model_hessian.KEY) or
                                     live.is_running(model_weights.KEY))
hessian_tab, weights_tab = st.tabs(["Loss Hessian", "Weights"])
with hessian_tab:
    model_hessian.hessian_section(inputs)
with weights_tab:
    model_weights.weights_section(inputs)
