"""The Decodex Streamlit dashboard: a page per question (one design point, its timeline,
serving, the seed systems side by side, sweeps, validation). ``decodex app`` starts it."""
