"""The Learn page's lessons: theory drawn over a live measurement (no Streamlit here)."""
